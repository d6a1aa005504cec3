//! The log level: `EOS_SEC_LOG` (env-filter syntax) when set, else the
//! command's default moved up by `-v`, or nothing with `-q`.

use tracing_subscriber::EnvFilter;

/// The levels `-q`/`-v` step through, least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

const LEVELS: [Level; 6] = [
    Level::Off,
    Level::Error,
    Level::Warn,
    Level::Info,
    Level::Debug,
    Level::Trace,
];

impl Level {
    fn directive(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    /// `self` moved `by` steps, held within off..=trace.
    pub fn moved(self, by: i8) -> Level {
        let at = LEVELS.iter().position(|l| *l == self).unwrap_or(0);
        let to = (at as i64 + i64::from(by)).clamp(0, LEVELS.len() as i64 - 1);
        LEVELS
            .get(usize::try_from(to).unwrap_or(0))
            .copied()
            .unwrap_or(self)
    }
}

/// How far to move the default: up one level per `-v`; `-q` below any
/// default (off).
pub fn verbosity(verbose: u8, quiet: bool) -> i8 {
    if quiet {
        return i8::MIN;
    }
    i8::try_from(verbose).unwrap_or(i8::MAX)
}

/// The filter for a command whose default level is `default`.
pub fn filter(default: Level, verbosity: i8) -> EnvFilter {
    EnvFilter::try_from_env("EOS_SEC_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default.moved(verbosity).directive()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_stop_at_the_ends() {
        assert_eq!(Level::Error.moved(0), Level::Error);
        assert_eq!(Level::Error.moved(2), Level::Info);
        assert_eq!(Level::Error.moved(-1), Level::Off);
        assert_eq!(Level::Error.moved(-5), Level::Off);
        assert_eq!(Level::Info.moved(9), Level::Trace);
        assert_eq!(Level::Info.moved(verbosity(0, true)), Level::Off);
        assert_eq!(Level::Error.moved(verbosity(2, false)), Level::Info);
        assert_eq!(Level::Error.moved(verbosity(200, false)), Level::Trace);
    }
}
