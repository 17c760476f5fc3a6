//! Environments side by side (for `cargo xtask ci`): top-1 accuracy (top
//! panel) and images per second (bottom panel), one horizontal bar per
//! environment labelled with its name and versions.
//!
//! May use: `plots`.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{anchored, font, no_data, text_at, title_font, truncate, Area, DrawResult, PALETTE};

/// One environment's result.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvRow {
    /// Environment name (`torch24-cu124`).
    pub name: String,
    /// What it runs, short (`torch 2.4.1, CUDA 12.4`).
    pub versions: String,
    /// Top-1 accuracy, fraction in [0, 1].
    pub top1: f64,
    pub images_per_second: f64,
}

/// Pixel height of the comparison for `rows` environments (two panels).
pub fn height(rows: usize) -> u32 {
    (2 * (70 + 34 * rows.max(1)) as u32).max(super::HEIGHT)
}

/// Both panels.
pub fn draw(area: &Area, rows: &[EnvRow]) -> DrawResult {
    if rows.is_empty() {
        return no_data(area, "Environments", "no environment to compare");
    }
    let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 / 2);
    let top1: Vec<f64> = rows.iter().map(|r| r.top1 * 100.0).collect();
    panel(&top, rows, "Top-1 accuracy per environment", "%", &top1)?;
    let ips: Vec<f64> = rows.iter().map(|r| r.images_per_second).collect();
    panel(
        &bottom,
        rows,
        "Throughput per environment",
        "images / s",
        &ips,
    )
}

fn panel(area: &Area, rows: &[EnvRow], title: &str, unit: &str, values: &[f64]) -> DrawResult {
    let n = rows.len();
    let max = values.iter().copied().fold(0.0, f64::max).max(1e-9);
    let mut chart = ChartBuilder::on(area)
        .caption(title, title_font())
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(330)
        .build_cartesian_2d(0f64..max * 1.18, 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(unit)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style(font(14))
        .axis_desc_style(font(15))
        .draw()?;
    let row = |i: usize| (n - 1 - i) as f64;
    for (i, (env, &v)) in rows.iter().zip(values).enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let y = row(i);
        chart.draw_series([Rectangle::new(
            [(0.0, y + 0.15), (v, y + 0.85)],
            color.filled(),
        )])?;
        chart.draw_series([Text::new(
            format!("{v:.2}"),
            (v + max * 0.01, y + 0.5),
            anchored(14, HPos::Left, VPos::Center),
        )])?;
        let (px, py) = chart.backend_coord(&(0.0, y + 0.5));
        let label = format!(
            "{} ({})",
            truncate(&env.name, 20),
            truncate(&env.versions, 22)
        );
        let style = anchored(14, HPos::Right, VPos::Center);
        text_at(area, label, (px - 8, py), style)?;
    }
    Ok(())
}
