//! The run over time: images per second from the report's timeline, and
//! each GPU's memory, utilization, power and temperature from the NVML
//! series, one line per device.
//!
//! May use: `plots`, `stats`.

use plotters::prelude::*;
use report::{EvalReport, GpuSample, GpuSeries};

use super::super::stats;
use super::{chart, font, legend, no_data, span, Area, DrawResult, PALETTE};

/// Images per second between batches, and the run's overall rate.
pub fn throughput(area: &Area, r: &EvalReport) -> DrawResult {
    let title = "Throughput over time";
    let rates = stats::throughput(&r.performance.timeline);
    if rates.is_empty() {
        return no_data(area, title, "the report has no timeline");
    }
    let t_max = rates.iter().map(|p| p.0).fold(0.0, f64::max);
    let overall = r.performance.images_per_second;
    let y_max = rates.iter().map(|p| p.1).fold(overall, f64::max);
    let mut chart = chart(
        area,
        title,
        72,
        span(0.0, t_max, 0.0),
        0f64..(y_max * 1.15).max(1.0),
    )?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start")
        .y_desc("images / s")
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(font(15))
        .axis_desc_style(font(16))
        .draw()?;
    chart
        .draw_series(LineSeries::new(rates.clone(), PALETTE[0].stroke_width(2)))?
        .label("between batches")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], PALETTE[0].stroke_width(2)));
    if rates.len() == 1 {
        chart.draw_series([Circle::new(rates[0], 5, PALETTE[0].filled())])?;
    }
    if overall > 0.0 {
        chart
            .draw_series(LineSeries::new(
                [(0.0, overall), (t_max, overall)],
                PALETTE[1].stroke_width(2),
            ))?
            .label(format!("whole run: {overall:.1} images/s"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], PALETTE[1].stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// One figure of a GPU sample (`None` when the device did not report it).
pub type Figure = fn(&GpuSample) -> Option<f64>;

/// GPU memory in use, GiB.
pub fn memory_gib(s: &GpuSample) -> Option<f64> {
    s.memory_used_bytes.map(|b| b as f64 / (1u64 << 30) as f64)
}

/// GPU utilization, percent.
pub fn utilization(s: &GpuSample) -> Option<f64> {
    s.utilization_percent.map(f64::from)
}

/// GPU power draw, watts.
pub fn power(s: &GpuSample) -> Option<f64> {
    s.power_watts
}

/// GPU temperature, °C.
pub fn temperature(s: &GpuSample) -> Option<f64> {
    s.temperature_c.map(f64::from)
}

fn points(d: &GpuSeries, figure: Figure) -> Vec<(f64, f64)> {
    d.samples
        .iter()
        .filter_map(|s| figure(s).map(|v| (s.t, v)))
        .collect()
}

/// One figure of every device over time (`y_floor`: the lowest top of the
/// y axis, e.g. 100 for percent).
pub fn gpu_series(
    area: &Area,
    r: &EvalReport,
    title: &str,
    y_desc: &str,
    figure: Figure,
    y_floor: f64,
) -> DrawResult {
    if let Some(why) = r.gpu.why_unavailable() {
        return no_data(area, title, why);
    }
    let series: Vec<(&GpuSeries, Vec<(f64, f64)>)> = r
        .gpu
        .devices
        .iter()
        .map(|d| (d, points(d, figure)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    if series.is_empty() {
        return no_data(area, title, "no device reported this figure");
    }
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (t_max, v_max) = all.fold((0.0f64, 0.0f64), |(t, v), p| (t.max(p.0), v.max(p.1)));
    let y_max = (v_max * 1.15).max(y_floor);
    let decimals = if y_max >= 20.0 { 0 } else { 1 };
    let mut chart = chart(area, title, 72, span(0.0, t_max, 0.0), 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since sampling started")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .label_style(font(15))
        .axis_desc_style(font(16))
        .draw()?;
    for (i, (device, p)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(p.clone(), color.stroke_width(2)))?
            .label(format!("GPU {}: {}", device.index, device.name))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        if p.len() == 1 {
            chart.draw_series([Circle::new(p[0], 5, color.filled())])?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// Memory in use per device, GiB.
pub fn gpu_memory(area: &Area, r: &EvalReport) -> DrawResult {
    gpu_series(area, r, "GPU memory in use", "GiB", memory_gib, 1.0)
}

/// Utilization per device, percent.
pub fn gpu_utilization(area: &Area, r: &EvalReport) -> DrawResult {
    gpu_series(
        area,
        r,
        "GPU utilization",
        "% of time a kernel ran",
        utilization,
        100.0,
    )
}

/// Power (top) and temperature (bottom) per device.
pub fn gpu_power_temp(area: &Area, r: &EvalReport) -> DrawResult {
    let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 / 2);
    gpu_series(&top, r, "GPU power draw", "W", power, 10.0)?;
    gpu_series(&bottom, r, "GPU temperature", "°C", temperature, 10.0)
}
