//! Serde for an [`IpNet`] as its canonical text ([`canonical`]), for
//! `#[serde(with = "eos_ipset::canonical_serde")]` on a field of type
//! `IpNet` (and [`vec`](mod@vec) on a `Vec<IpNet>`).
//!
//! Written as [`canonical`] writes it; read strictly with [`parse_net`] and
//! refused unless the text is already canonical, so what a file names is
//! exactly the network that is used — no host bits, no IPv4-mapped IPv6, no
//! bare address standing in for a `/32` — and a document read and written
//! again is unchanged.

use ipnet::IpNet;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

use crate::{canonical, parse_net};

/// Write `net` as its canonical text.
pub fn serialize<S: Serializer>(net: &IpNet, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&canonical(net))
}

/// Read a network from its canonical text; any other spelling is refused,
/// naming the text and, when it parses, its canonical form.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<IpNet, D::Error> {
    let text = String::deserialize(deserializer)?;
    from_text(&text).map_err(D::Error::custom)
}

/// The network `text` names, when `text` is its canonical form.
pub fn from_text(text: &str) -> Result<IpNet, String> {
    let net = parse_net(text)
        .map_err(|e| format!("entry `{text}`: {e}"))?
        .net;
    let want = canonical(&net);
    if want != text {
        return Err(format!(
            "entry `{text}` is not a canonical CIDR (write `{want}`)"
        ));
    }
    Ok(net)
}

/// The same for a `Vec<IpNet>`, written as a list of canonical texts.
pub mod vec {
    use ipnet::IpNet;
    use serde::de::Error as _;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::canonical;

    /// Write each network as its canonical text, in order.
    pub fn serialize<S: Serializer>(nets: &[IpNet], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(nets.len()))?;
        for net in nets {
            seq.serialize_element(&canonical(net))?;
        }
        seq.end()
    }

    /// Read a list of canonical texts.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|t| super::from_text(t).map_err(D::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Entry {
        #[serde(with = "crate::canonical_serde")]
        cidr: IpNet,
        #[serde(with = "crate::canonical_serde::vec")]
        before: Vec<IpNet>,
    }

    #[test]
    fn reads_only_canonical_text() {
        let e: Entry =
            serde_json::from_str(r#"{"cidr":"192.0.2.0/24","before":["2001:db8::/32"]}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"cidr":"192.0.2.0/24","before":["2001:db8::/32"]}"#
        );
        for (bad, why) in [
            ("192.0.2.1/24", "write `192.0.2.0/24`"),
            ("192.0.2.1", "write `192.0.2.1/32`"),
            ("2001:DB8::/32", "write `2001:db8::/32`"),
            ("::ffff:192.0.2.1/128", "write `192.0.2.1/32`"),
            ("192.0.2.0/33", "192.0.2.0/33"),
        ] {
            let json = format!(r#"{{"cidr":"{bad}","before":[]}}"#);
            let e = serde_json::from_str::<Entry>(&json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
            let json = format!(r#"{{"cidr":"192.0.2.0/24","before":["{bad}"]}}"#);
            let e = serde_json::from_str::<Entry>(&json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
