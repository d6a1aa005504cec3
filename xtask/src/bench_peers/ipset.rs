//! IP set aggregation: `eos-sec ipset aggregate` vs iprange, netaddr, ipaddress.
use anyhow::Result;

use super::{Bench, Report};

pub fn run(_bench: &Bench, _report: &mut Report) -> Result<()> {
    Ok(())
}
