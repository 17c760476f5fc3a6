//! The series building against a recorded H100 series: two devices, ten
//! readings each, power `NotSupported` (None) in some of GPU 0's readings
//! and in all of GPU 1's.

use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use report::gpu::summarize;
use report::{GpuMonitor, GpuSample};

use crate::sampler::{Recorder, Sampler};
use crate::source::{DeviceInfo, Snapshot, Source};
use crate::GpumonError;

const MIB: u64 = 1024 * 1024;
const H100_TOTAL: u64 = 81_559 * MIB;
const DRIVER: &str = "550.54.15";

/// (memory used MiB, util %, temp °C, power W, SM clock MHz) of GPU 0, a
/// run warming up, evaluating, and ending.
#[allow(clippy::type_complexity)]
const GPU0: [(u64, u32, u32, Option<f64>, u32); 10] = [
    (535, 0, 34, Some(71.2), 345),
    (4_101, 12, 36, Some(118.5), 1980),
    (18_733, 65, 45, None, 1980),
    (41_210, 97, 58, Some(512.3), 1980),
    (61_442, 100, 66, Some(688.9), 1980),
    (61_442, 99, 69, Some(700.1), 1980),
    (61_442, 100, 71, None, 1755),
    (61_442, 98, 72, Some(695.4), 1980),
    (61_442, 100, 73, Some(699.0), 1980),
    (3_001, 3, 61, Some(130.7), 1980),
];

fn sample(m: u64, util: u32, temp: Option<u32>, power: Option<f64>, sm: u32) -> GpuSample {
    GpuSample {
        t: 0.0,
        memory_used_bytes: Some(m * MIB),
        utilization_percent: Some(util),
        temperature_c: temp,
        power_watts: power,
        sm_clock_mhz: Some(sm),
    }
}

fn device(index: u32) -> DeviceInfo {
    DeviceInfo {
        index,
        name: "NVIDIA H100 80GB HBM3".into(),
        uuid: format!("GPU-6f1c2a3b-0000-4000-8000-00000000000{index}"),
        memory_total_bytes: Some(H100_TOTAL),
    }
}

/// Recorded readings, replayed in order (the last one again when they run
/// out); tells `progress` how many readings of GPU 0 it has given.
struct Recorded {
    readings: Vec<Vec<GpuSample>>,
    next: Vec<usize>,
    progress: Option<Sender<usize>>,
}

impl Recorded {
    fn h100() -> Recorded {
        let gpu0 = GPU0
            .iter()
            .map(|&(m, u, t, p, sm)| sample(m, u, Some(t), p, sm))
            .collect();
        // An idle second GPU whose board reports no power at all, and one
        // temperature reading that failed.
        let gpu1 = (0..10)
            .map(|i| sample(4, 0, (i != 5).then_some(30 + i), None, 345))
            .collect();
        Recorded {
            readings: vec![gpu0, gpu1],
            next: vec![0, 0],
            progress: None,
        }
    }

    /// GPU `index`'s recorded readings stamped with `t`.
    fn stamped(index: usize, t: &[f64]) -> Vec<GpuSample> {
        Recorded::h100().readings[index]
            .iter()
            .zip(t)
            .map(|(s, &t)| GpuSample { t, ..s.clone() })
            .collect()
    }
}

impl Source for Recorded {
    fn devices(&mut self) -> Result<Vec<DeviceInfo>, GpumonError> {
        Ok((0..self.readings.len() as u32).map(device).collect())
    }

    fn driver_version(&mut self) -> Option<String> {
        Some(DRIVER.into())
    }

    fn read(&mut self, index: u32) -> GpuSample {
        let i = index as usize;
        let n = self.next[i];
        self.next[i] += 1;
        if let (0, Some(p)) = (i, &self.progress) {
            let _ = p.send(n + 1);
        }
        self.readings[i][n.min(self.readings[i].len() - 1)].clone()
    }
}

/// A source with no device, or that cannot open.
struct Empty;

impl Source for Empty {
    fn devices(&mut self) -> Result<Vec<DeviceInfo>, GpumonError> {
        Ok(vec![])
    }
    fn driver_version(&mut self) -> Option<String> {
        None
    }
    fn read(&mut self, _: u32) -> GpuSample {
        GpuSample::default()
    }
}

fn assert_t_ordered(monitor: &GpuMonitor) {
    for d in &monitor.devices {
        let t: Vec<f64> = d.samples.iter().map(|s| s.t).collect();
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "t out of order: {t:?}");
        assert!(t.iter().all(|&t| t >= 0.0));
    }
}

#[test]
fn the_recorder_builds_each_devices_series_and_summary() {
    let mut source = Recorded::h100();
    let mut recorder = Recorder::open(&mut source, Duration::from_millis(500)).unwrap();
    let t: Vec<f64> = (0..10).map(|i| f64::from(i) * 0.5).collect();
    for &t in &t {
        recorder.record(&mut source, t);
    }
    let m = recorder.finish();
    assert!(m.available);
    assert_eq!(m.reason, None);
    assert_eq!(m.interval_ms, 500);
    assert_eq!(m.driver_version.as_deref(), Some(DRIVER));
    assert_eq!(m.devices.len(), 2);
    for (i, d) in m.devices.iter().enumerate() {
        assert_eq!((d.index, &d.name), (i as u32, &device(i as u32).name));
        assert_eq!(d.uuid, device(i as u32).uuid);
        assert_eq!(d.memory_total_bytes, Some(H100_TOTAL));
        assert_eq!(d.samples, Recorded::stamped(i, &t));
        assert_eq!(d.summary, summarize(&d.samples));
    }
    // NotSupported power stays null, and is left out of the power figures.
    let gpu0 = &m.devices[0];
    assert_eq!(gpu0.samples[2].power_watts, None);
    assert_eq!(gpu0.samples[6].power_watts, None);
    let s = &gpu0.summary;
    assert_eq!(s.samples, 10);
    assert_eq!(s.peak_memory_bytes, Some(61_442 * MIB));
    assert_eq!(s.mean_utilization_percent, Some(67.4));
    assert_eq!(s.max_temperature_c, Some(73));
    assert!((s.mean_power_watts.unwrap() - 3616.1 / 8.0).abs() < 1e-9);
    assert_eq!(s.peak_power_watts, Some(700.1));
    assert_eq!(s.max_sm_clock_mhz, Some(1980));
    let s = &m.devices[1].summary;
    assert_eq!((s.mean_power_watts, s.peak_power_watts), (None, None));
    assert_eq!(s.max_temperature_c, Some(39));
}

#[test]
fn finish_stops_at_once_with_the_first_and_the_last_reading() {
    // An hour's interval: finish must not wait it out. The series is the
    // reading at start and the one at finish.
    let sampler = Sampler::start_with(Duration::from_secs(3600), || Ok(Recorded::h100()));
    let m = sampler.finish();
    assert!(m.available, "{:?}", m.reason);
    assert_eq!(m.interval_ms, 3_600_000);
    assert_eq!(m.devices.len(), 2);
    assert_t_ordered(&m);
    for (i, d) in m.devices.iter().enumerate() {
        let t: Vec<f64> = d.samples.iter().map(|s| s.t).collect();
        assert_eq!(d.samples, Recorded::stamped(i, &t)[..2]);
        assert_eq!(d.summary, summarize(&d.samples));
        assert_eq!(d.summary.samples, 2);
    }
}

#[test]
fn the_sampler_replays_the_recorded_series_in_order() {
    let (progress, given) = mpsc::channel();
    let sampler = Sampler::start_with(Duration::from_millis(1), move || {
        Ok(Recorded {
            progress: Some(progress),
            ..Recorded::h100()
        })
    });
    while given.recv().unwrap() < 10 {}
    let m = sampler.finish();
    assert!(m.available);
    assert_t_ordered(&m);
    for (i, d) in m.devices.iter().enumerate() {
        // All ten recorded readings, then the last one repeated (at least
        // the reading at finish).
        assert!(d.samples.len() >= 11, "{} samples", d.samples.len());
        let t: Vec<f64> = d.samples.iter().map(|s| s.t).collect();
        assert_eq!(d.samples[..10], Recorded::stamped(i, &t)[..]);
        let last = GpuSample {
            t: 0.0,
            ..d.samples[9].clone()
        };
        assert!(d.samples[10..].iter().all(|s| GpuSample {
            t: 0.0,
            ..s.clone()
        } == last));
        assert_eq!(d.summary, summarize(&d.samples));
    }
}

#[test]
fn without_nvml_or_a_device_finish_says_why() {
    let not_loaded = GpumonError::NotLoaded {
        detail: "libnvidia-ml.so.1: cannot open shared object file".into(),
    };
    let e = not_loaded.clone();
    let m = Sampler::start_with(Duration::from_secs(1), move || Err::<Empty, _>(e)).finish();
    assert_eq!(m, GpuMonitor::unavailable(not_loaded.to_string()));
    assert!(m.reason.unwrap().starts_with(
        "NVML unavailable: libnvidia-ml.so.1 could not be loaded (no NVIDIA driver on this machine or in this container?)"
    ));

    let m = Sampler::start_with(Duration::from_secs(1), || Ok(Empty)).finish();
    assert_eq!(
        m,
        GpuMonitor::unavailable("NVML unavailable: libnvidia-ml.so.1 shows no GPU")
    );
}

#[test]
fn a_snapshot_reads_every_device_once() {
    let s = Snapshot::read(&mut Recorded::h100()).unwrap();
    assert_eq!(s.driver_version.as_deref(), Some(DRIVER));
    assert_eq!(s.devices.len(), 2);
    assert_eq!(s.devices[0].device, device(0));
    assert_eq!(s.devices[0].sample, Recorded::h100().readings[0][0]);
    let m = s.into_monitor();
    assert!(m.available);
    assert_eq!(m.devices[1].samples.len(), 1);
    assert_eq!(m.devices[1].summary.samples, 1);
    assert_eq!(Snapshot::read(&mut Empty), Err(GpumonError::NoDevice));
}

#[test]
fn every_error_names_the_library() {
    let errors = [
        GpumonError::NotLoaded { detail: "x".into() },
        GpumonError::Init { detail: "x".into() },
        GpumonError::NoDevice,
        GpumonError::Query {
            what: "count the devices",
            detail: "x".into(),
        },
    ];
    for e in errors {
        assert!(e.to_string().contains(crate::LIBRARY), "{e}");
    }
}
