//! `[[collector.host]]`: this machine's CPU, memory, swap, load, disks, network
//! interfaces and uptime, read with sysinfo.
//!
//! One [`sysinfo::System`], [`Disks`] and [`Networks`] stay alive between runs
//! and only the parts the metrics need are refreshed. sysinfo reads `/proc` and
//! `/sys` with blocking calls, so every run happens on tokio's blocking pool.
//!
//! CPU usage is a difference between two readings. The first run takes one reading,
//! waits [`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`] (200 ms on Linux) and takes the
//! second, so `host_cpu_usage_percent` is there from the first run on; later runs
//! measure the usage since the previous run.
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | unit |
//! |---|---|
//! | `host_cpu_usage_percent` | busy time of all CPUs since the previous run, 0–100 |
//! | `host_cpu_count` | logical CPUs |
//! | `host_memory_used_percent` | (total − available) / total, 0–100 |
//! | `host_memory_available_bytes`, `host_memory_total_bytes` | bytes |
//! | `host_swap_used_percent` | 0–100, 0 when there is no swap |
//! | `host_load1`, `host_load5`, `host_load15` | run-queue averages |
//! | `host_disk_used_percent{mountpoint}` | used / (used + free), 0–100, as `df` shows it |
//! | `host_disk_free_bytes{mountpoint}` | bytes an unprivileged user can still write |
//! | `host_disk_total_bytes{mountpoint}` | bytes |
//! | `host_network_receive_bytes_total{interface}` | bytes since the interface came up |
//! | `host_network_transmit_bytes_total{interface}` | bytes since the interface came up |
//! | `host_uptime_seconds` | seconds since boot |
//!
//! Blocks reserved for root count neither as used nor as free, as in `df`'s
//! `Use%`: `host_disk_used_percent` reaches 100 when ordinary processes can no
//! longer write. sysinfo lists the mounts (leaving out pseudo filesystems, tmpfs
//! and network filesystems) but does not give the free-block count `df` needs, so
//! each mount is measured with one `statvfs(3)` call. Mounts of single files
//! (container bind mounts such as `/etc/hosts`) are left out.

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sysinfo::{
    CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System,
};
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::Sample;
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{
    Common, CommonKeys, NameKey, SampleBuf, TargetLabels, blocking, lock_state, one_label, percent,
};

/// `[[collector.host]]`: this machine's vital signs.
///
/// ```toml
/// [[collector.host]]
/// interval = "5s"
/// labels = { role = "db" }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The `instance` label of every sample. Default: the machine's host name.
    /// Example: `name = "db-1"`.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// How often to collect, as a duration, at least `"1s"`. Default `"5s"`. Example:
    /// `interval = "15s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one run may take before it counts as failed, at most the interval.
    /// Default: the interval, but no more than `"10s"`. Example: `timeout = "2s"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample, as a table of label name to value. Default
    /// none. `instance`, `mountpoint` and `interface` are taken. Example:
    /// `labels = { role = "db", dc = "fra1" }`.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
}

impl HostConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector;
    /// `default_name` gives the host name when `name` is not set.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        default_name: impl FnOnce() -> String,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let name = match &self.name {
            Some(n) => NameKey::Given(n),
            None => NameKey::Default(default_name()),
        };
        let common = CommonKeys {
            kind: "host",
            entry,
            name,
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &["mountpoint", "interface"],
        }
        .check(problems)?;
        Some((common, Box::new(HostCollector::new())))
    }
}

/// This machine's host name, `localhost` when the system will not say.
pub fn host_name() -> String {
    match System::host_name() {
        Ok(n) if !n.is_empty() => n,
        Ok(_) => "localhost".into(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the host name; using 'localhost'");
            "localhost".into()
        }
    }
}

/// Collects the host metrics (see the module docs).
pub struct HostCollector {
    // A std mutex, not a tokio one: it is only locked inside `spawn_blocking`
    // closures and never held across an `.await`. The state sits behind a mutex
    // rather than being moved into the closure and back, so a run that timed out
    // (its closure still running) does not lose it; the next run waits for it.
    state: Arc<Mutex<Option<HostState>>>,
}

/// What sysinfo keeps between runs: the previous CPU times, the disk and
/// interface lists.
struct HostState {
    sys: System,
    disks: Disks,
    nets: Networks,
}

impl HostState {
    /// Reads the lists and takes the first CPU reading.
    fn new() -> Result<Self, CollectError> {
        let internal = |what: &str, e: sysinfo::Error| {
            CollectError::Internal(format!("cannot read {what}: {e}"))
        };
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::everything()),
        )
        .map_err(|e| internal("CPU and memory", e))?;
        let disks = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing())
            .map_err(|e| internal("disks", e))?;
        let nets =
            Networks::new_with_refreshed_list().map_err(|e| internal("network interfaces", e))?;
        Ok(Self { sys, disks, nets })
    }

    /// Refreshes what the metrics need and writes them into `out`.
    fn read(&mut self, out: &mut SampleBuf) {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        // The mount list only; space comes from `statvfs` below.
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing());
        self.nets.refresh(true);

        let sys = &self.sys;
        let none = warden_engine::model::Labels::empty;
        out.add(
            "host_cpu_usage_percent",
            none(),
            f64::from(sys.global_cpu_usage()).clamp(0.0, 100.0),
        );
        out.add("host_cpu_count", none(), sys.cpus().len() as f64);

        let (total, available) = (sys.total_memory(), sys.available_memory());
        out.add(
            "host_memory_used_percent",
            none(),
            percent(total.saturating_sub(available), total),
        );
        out.add("host_memory_available_bytes", none(), available as f64);
        out.add("host_memory_total_bytes", none(), total as f64);
        out.add(
            "host_swap_used_percent",
            none(),
            percent(sys.used_swap(), sys.total_swap()),
        );

        match System::load_average() {
            Ok(load) => {
                out.add("host_load1", none(), load.one);
                out.add("host_load5", none(), load.five);
                out.add("host_load15", none(), load.fifteen);
            }
            Err(e) => tracing::debug!(error = %e, "no load average"),
        }
        match System::uptime() {
            Ok(up) => out.add("host_uptime_seconds", none(), up as f64),
            Err(e) => tracing::debug!(error = %e, "no uptime"),
        }

        let mut seen = std::collections::HashSet::new();
        for disk in self.disks.iter() {
            let mount = disk.mount_point();
            // Bind mounts of single files (`/etc/hosts` in containers) are not
            // filesystems anyone fills; the same mount point listed twice would
            // write one series twice.
            if !mount.is_dir() || !seen.insert(mount.to_path_buf()) {
                continue;
            }
            let Some(space) = FsSpace::of(mount) else {
                continue;
            };
            if space.total == 0 {
                continue;
            }
            let labels = one_label("mountpoint", &mount.to_string_lossy());
            let used = space.total.saturating_sub(space.free);
            out.add(
                "host_disk_used_percent",
                labels.clone(),
                percent(used, used.saturating_add(space.available)),
            );
            out.add(
                "host_disk_free_bytes",
                labels.clone(),
                space.available as f64,
            );
            out.add("host_disk_total_bytes", labels, space.total as f64);
        }

        for (name, data) in self.nets.iter() {
            let labels = one_label("interface", &name.to_string_lossy());
            out.add(
                "host_network_receive_bytes_total",
                labels.clone(),
                data.total_received() as f64,
            );
            out.add(
                "host_network_transmit_bytes_total",
                labels,
                data.total_transmitted() as f64,
            );
        }
    }
}

/// The space of one filesystem, in bytes.
struct FsSpace {
    total: u64,
    /// Free blocks, including those reserved for root.
    free: u64,
    /// Free blocks ordinary users may write.
    available: u64,
}

impl FsSpace {
    /// `statvfs(3)` of the filesystem mounted at `mount`; `None` when it fails.
    // The block counts are `u64` here but `u32` on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    fn of(mount: &Path) -> Option<Self> {
        let path = CString::new(mount.as_os_str().as_bytes()).ok()?;
        let mut st = MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: a NUL-terminated path and room for one `statvfs`, which the call
        // fills when it returns 0.
        if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        let block = u64::from(st.f_frsize);
        let bytes = |blocks: libc::fsblkcnt_t| u64::from(blocks).saturating_mul(block);
        Some(Self {
            total: bytes(st.f_blocks),
            free: bytes(st.f_bfree),
            available: bytes(st.f_bavail),
        })
    }
}

impl HostCollector {
    /// A collector; sysinfo is first read on the first run.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(None)),
        }
    }

    async fn run(&self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        if let Some(samples) = self.read(cx, true).await? {
            return Ok(samples);
        }
        // The first run only built the state (the first CPU reading): give the
        // CPU counters time to move before the reading that counts.
        tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
        self.read(cx, false)
            .await?
            .ok_or_else(|| CollectError::Internal("host state vanished".into()))
    }

    /// Reads the metrics on the blocking pool. Without state yet it builds the
    /// state, and then returns `None` when `wait_if_new` (the caller waits for the
    /// CPU counters to move and reads again).
    async fn read(
        &self,
        cx: &CollectContext,
        wait_if_new: bool,
    ) -> Result<Option<Vec<Sample>>, CollectError> {
        let state = Arc::clone(&self.state);
        let now = cx.now;
        blocking(move || {
            let mut guard = lock_state(&state);
            let st = match guard.as_mut() {
                Some(st) => st,
                None => {
                    let st = guard.insert(HostState::new()?);
                    if wait_if_new {
                        return Ok(None);
                    }
                    st
                }
            };
            let mut out = SampleBuf::new(now);
            st.read(&mut out);
            Ok(Some(out.into_samples()))
        })
        .await
    }
}

impl Default for HostCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for HostCollector {
    fn kind(&self) -> &'static str {
        "host"
    }

    fn collect<'a>(
        &'a mut self,
        cx: &'a CollectContext,
    ) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
        Box::pin(self.run(cx))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio_util::sync::CancellationToken;
    use warden_engine::model::Labels;
    use warden_engine::scheduler::Pusher;
    use warden_engine::store::Ingest;

    use super::*;

    fn context() -> CollectContext {
        let (ingest, _rx) = Ingest::channel(8);
        CollectContext {
            now: warden_engine::model::now_ms(),
            push: Pusher::new(Labels::empty(), 10_000, ingest),
            shutdown: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn writes_every_host_metric_in_range() {
        let mut c = HostCollector::new();
        let cx = context();
        let samples = tokio::time::timeout(std::time::Duration::from_secs(20), c.collect(&cx))
            .await
            .expect("host collect took over 20s")
            .expect("host collect failed");

        let mut by_name: HashMap<&str, Vec<&Sample>> = HashMap::new();
        for s in &samples {
            assert_eq!(s.ts, cx.now);
            assert!(s.labels.get("instance").is_none(), "{s:?}");
            assert!(s.value.is_finite(), "{s:?}");
            assert!(s.value >= 0.0, "{s:?}");
            by_name.entry(s.name.as_str()).or_default().push(s);
        }
        let one = |name: &str| -> f64 {
            let v = by_name.get(name).unwrap_or_else(|| panic!("no {name}"));
            assert_eq!(v.len(), 1, "{name}: {v:?}");
            assert!(v[0].labels.is_empty(), "{name}: {v:?}");
            v[0].value
        };
        for name in [
            "host_cpu_usage_percent",
            "host_memory_used_percent",
            "host_swap_used_percent",
        ] {
            assert!((0.0..=100.0).contains(&one(name)), "{name}");
        }
        assert!(one("host_cpu_count") >= 1.0);
        assert!(one("host_memory_total_bytes") > 0.0);
        assert!(one("host_memory_available_bytes") <= one("host_memory_total_bytes"));
        for name in ["host_load1", "host_load5", "host_load15"] {
            one(name);
        }
        assert!(one("host_uptime_seconds") > 0.0);

        let per = |name: &str, label: &str| -> HashMap<String, f64> {
            let v = by_name.get(name).unwrap_or_else(|| panic!("no {name}"));
            let m: HashMap<String, f64> = v
                .iter()
                .map(|s| (s.labels.get(label).expect(label).to_string(), s.value))
                .collect();
            assert_eq!(m.len(), v.len(), "{name}: one series per {label}");
            m
        };
        let used = per("host_disk_used_percent", "mountpoint");
        let free = per("host_disk_free_bytes", "mountpoint");
        let total = per("host_disk_total_bytes", "mountpoint");
        assert!(!used.is_empty(), "no disk");
        for (mp, pct) in &used {
            assert!((0.0..=100.0).contains(pct), "{mp}: {pct}");
            assert!(free[mp] <= total[mp], "{mp}");
        }
        let rx = per("host_network_receive_bytes_total", "interface");
        let tx = per("host_network_transmit_bytes_total", "interface");
        assert!(rx.contains_key("lo"), "interfaces: {:?}", rx.keys());
        assert_eq!(rx.len(), tx.len());

        // The second run reuses the state, and counters never go backwards.
        let cx2 = context();
        let again = c.collect(&cx2).await.expect("second collect failed");
        let rx2: HashMap<String, f64> = again
            .iter()
            .filter(|s| s.name.as_str() == "host_network_receive_bytes_total")
            .map(|s| (s.labels.get("interface").unwrap_or("").to_string(), s.value))
            .collect();
        for (ifname, v) in &rx {
            if let Some(v2) = rx2.get(ifname) {
                assert!(v2 >= v, "{ifname}: {v} then {v2}");
            }
        }
    }
}
