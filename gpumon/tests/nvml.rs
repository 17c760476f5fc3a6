//! The real NVML, whatever this machine has: without `libnvidia-ml.so.1`
//! (or without a GPU) both entry points say why, naming the library; with
//! a GPU they read it.

use std::time::Duration;

#[test]
fn snapshot_and_sampler_on_this_machines_nvml() {
    let sampler = gpumon::Sampler::start(Duration::from_millis(50));
    let snapshot = gpumon::snapshot();
    let monitor = sampler.finish();
    match snapshot {
        Ok(s) => {
            assert!(!s.devices.is_empty());
            assert!(monitor.available, "{:?}", monitor.reason);
            assert_eq!(monitor.reason, None);
            assert!(!monitor.devices.is_empty());
            assert_eq!(monitor.devices.len(), s.devices.len());
            for d in &monitor.devices {
                assert!(d.samples.len() >= 2, "{} samples", d.samples.len());
                assert!(!d.name.is_empty());
            }
        }
        Err(e) => {
            let reason = e.to_string();
            assert!(reason.contains("libnvidia-ml.so.1"), "{reason}");
            assert!(!monitor.available);
            assert_eq!(monitor.reason.as_deref(), Some(reason.as_str()));
            assert!(monitor.devices.is_empty());
        }
    }
}
