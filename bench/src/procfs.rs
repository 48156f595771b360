//! The relay's CPU time and resident memory, read from Linux's /proc.

use std::process::Command;

/// Clock ticks per second, the unit of CPU times in /proc/PID/stat, asked
/// of `getconf CLK_TCK` (which knows it without linking libc); Linux has
/// used 100 everywhere for decades, so that is the fallback.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// User plus system CPU ticks from the text of /proc/PID/stat.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses; the
    // fields after its closing parenthesis are plain numbers. There, field
    // 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Whether /proc/PID/stat describes a process that has not exited (a
/// zombie, state `Z`, has).
pub fn parse_running(stat: &str) -> bool {
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}

/// Resident memory in KiB from the text of /proc/PID/status.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One process watched through /proc.
#[derive(Debug, Clone, Copy)]
pub struct Proc {
    pid: u32,
    ticks_per_s: u64,
}

impl Proc {
    /// Watches `pid`.
    pub fn new(pid: u32) -> Proc {
        Proc {
            pid,
            ticks_per_s: clock_ticks(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.pid)).ok()
    }

    /// CPU seconds (user + system) used so far; `None` once it is gone.
    pub fn cpu_s(&self) -> Option<f64> {
        let ticks = parse_cpu_ticks(&self.read("stat")?)?;
        Some(ticks as f64 / self.ticks_per_s as f64)
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        parse_rss_kib(&self.read("status")?)
    }

    /// Whether the process still runs.
    pub fn running(&self) -> bool {
        self.read("stat").is_some_and(|s| parse_running(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (relay (x) y) S 1 4242 4242 0 -1 4194560 1571 0 0 0 \
                        250 75 0 0 20 0 9 0 123 456789 1234 18446744073709551615";

    #[test]
    fn cpu_ticks_add_user_and_system_past_an_odd_command_name() {
        assert_eq!(parse_cpu_ticks(STAT), Some(325));
        assert!(parse_running(STAT));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn a_zombie_is_not_running() {
        assert!(!parse_running(&STAT.replace(") S ", ") Z ")));
        assert!(!parse_running(""));
    }

    #[test]
    fn rss_comes_from_vmrss() {
        let status = "Name:\trelay\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(parse_rss_kib(status), Some(12345));
        assert_eq!(parse_rss_kib("Name:\trelay\n"), None);
    }

    #[test]
    fn this_process_can_be_watched() {
        let me = Proc::new(std::process::id());
        assert!(me.running());
        assert!(me.cpu_s().is_some());
        assert!(me.rss_kib().unwrap() > 0);
        assert!(clock_ticks() > 0);
    }
}
