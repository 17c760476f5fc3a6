//! [`Sampler`]: a thread reading every device each interval until
//! [`Sampler::finish`], which takes one last reading and returns the series
//! as a [`GpuMonitor`]. [`Recorder`] builds the series from a [`Source`]
//! and knows nothing of threads or NVML.
//!
//! May use: the crate root (`GpumonError`), `source`, `nvml`.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use report::{GpuMonitor, GpuSample};

use crate::nvml::NvmlSource;
use crate::source::{series, DeviceInfo, Source};
use crate::GpumonError;

/// The shortest interval sampled at (a shorter one is raised to it).
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Builds each device's series, one reading of every device at a time.
pub struct Recorder {
    interval_ms: u64,
    driver_version: Option<String>,
    devices: Vec<(DeviceInfo, Vec<GpuSample>)>,
}

impl Recorder {
    /// The devices of `source`, no samples yet; no device is
    /// [`GpumonError::NoDevice`].
    pub fn open<S: Source>(source: &mut S, interval: Duration) -> Result<Recorder, GpumonError> {
        let devices = source.devices()?;
        if devices.is_empty() {
            return Err(GpumonError::NoDevice);
        }
        Ok(Recorder {
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            driver_version: source.driver_version(),
            devices: devices.into_iter().map(|d| (d, Vec::new())).collect(),
        })
    }

    /// Reads every device once, stamped `t` seconds since the start.
    pub fn record<S: Source>(&mut self, source: &mut S, t: f64) {
        for (device, samples) in &mut self.devices {
            samples.push(GpuSample {
                t,
                ..source.read(device.index)
            });
        }
    }

    /// The series and their summaries.
    pub fn finish(self) -> GpuMonitor {
        GpuMonitor {
            available: true,
            reason: None,
            interval_ms: self.interval_ms,
            driver_version: self.driver_version,
            devices: self
                .devices
                .into_iter()
                .map(|(device, samples)| series(device, samples))
                .collect(),
        }
    }
}

/// Samples every device on a thread of its own until [`Sampler::finish`].
pub struct Sampler {
    stop: Sender<()>,
    thread: Result<JoinHandle<GpuMonitor>, String>,
}

impl Sampler {
    /// Samples NVML every `interval` (at least [`MIN_INTERVAL`]). Never
    /// fails: without NVML or a device, [`Sampler::finish`] says why.
    pub fn start(interval: Duration) -> Sampler {
        Sampler::start_with(interval, NvmlSource::open)
    }

    /// Samples the source `open` returns (opened on the sampling thread,
    /// so `start` does not wait for it) every `interval`.
    pub fn start_with<S, F>(interval: Duration, open: F) -> Sampler
    where
        S: Source,
        F: FnOnce() -> Result<S, GpumonError> + Send + 'static,
    {
        let started = Instant::now();
        let interval = interval.max(MIN_INTERVAL);
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("gpumon".into())
            .spawn(move || match open() {
                Ok(mut source) => sample(&mut source, interval, &stopped, started),
                Err(e) => GpuMonitor::unavailable(e.to_string()),
            })
            .map_err(|e| format!("GPU sampling thread could not start: {e}"));
        Sampler { stop, thread }
    }

    /// Stops the sampling at once (without waiting out the interval),
    /// takes one last reading and returns the series, or why there are
    /// none.
    pub fn finish(self) -> GpuMonitor {
        // The thread may be gone already (no NVML): nothing to stop then.
        let _ = self.stop.send(());
        match self.thread {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| GpuMonitor::unavailable("GPU sampling thread panicked")),
            Err(reason) => GpuMonitor::unavailable(reason),
        }
    }
}

/// The sampling loop: a reading now, then one each `interval` until a stop
/// (or the [`Sampler`] dropped), then the last one.
fn sample<S: Source>(
    source: &mut S,
    interval: Duration,
    stopped: &Receiver<()>,
    started: Instant,
) -> GpuMonitor {
    let mut recorder = match Recorder::open(source, interval) {
        Ok(r) => r,
        Err(e) => return GpuMonitor::unavailable(e.to_string()),
    };
    let mut next = Instant::now();
    loop {
        recorder.record(source, started.elapsed().as_secs_f64());
        // Keep to the interval's grid; after a slow reading, wait a whole
        // interval from now rather than reading again at once.
        let now = Instant::now();
        next += interval;
        if next <= now {
            next = now + interval;
        }
        match stopped.recv_timeout(next - now) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    recorder.record(source, started.elapsed().as_secs_f64());
    recorder.finish()
}
