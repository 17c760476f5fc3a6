//! What the model got right and wrong: the top-k curve, per-class accuracy,
//! the most-confused pairs, the confusion matrix of the classes with the
//! most errors, the reliability diagram (with its ECE) and accuracy versus
//! coverage.
//!
//! May use: `plots`, `stats`, `summary`.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use report::EvalReport;

use super::super::stats;
use super::super::summary::{class_name, percent, TOP};
use super::{
    anchored, chart, font, legend, no_data, span, text_at, truncate, Area, DrawResult, ERROR_RED,
    GREY, PALETTE,
};

/// Confidence bins of the reliability diagram.
pub const RELIABILITY_BINS: usize = 12;
/// Classes in the confusion matrix.
pub const MATRIX_CLASSES: usize = 20;

/// A fraction as a percent tick label; none above 100 % (the axes leave a
/// little room over 100 % so points there are not cut).
fn percent_axis(v: &f64) -> String {
    if *v > 1.0 + 1e-9 {
        String::new()
    } else {
        format!("{:.0}%", v * 100.0)
    }
}

/// Top-k accuracy for k = 1…10 (falls back to top-1 and top-5).
pub fn topk(area: &Area, r: &EvalReport) -> DrawResult {
    let title = "Top-k accuracy";
    let points: Vec<(f64, f64)> = if r.metrics.topk.is_empty() {
        if r.metrics.evaluated == 0 {
            vec![]
        } else {
            vec![(1.0, r.metrics.top1), (5.0, r.metrics.top5)]
        }
    } else {
        let k = r.metrics.topk.iter().enumerate();
        k.map(|(i, &a)| ((i + 1) as f64, a)).collect()
    };
    if points.is_empty() {
        return no_data(area, title, "no image was evaluated");
    }
    let lo = points.iter().map(|p| p.1).fold(1.0, f64::min);
    let y = span(lo, 1.0, 0.08);
    let mut chart = chart(area, title, 64, 0.5f64..10.5f64, y.start..y.end.min(1.02))?;
    chart
        .configure_mesh()
        .x_labels(10)
        .x_label_formatter(&|k| format!("{k:.0}"))
        .y_label_formatter(&percent_axis)
        .x_desc("k")
        .y_desc("images with the label in the top k")
        .label_style(font(15))
        .axis_desc_style(font(16))
        .draw()?;
    let color = PALETTE[0];
    chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?;
    chart.draw_series(points.iter().map(|&(k, a)| {
        EmptyElement::at((k, a))
            + Circle::new((0, 0), 5, color.filled())
            + Text::new(
                format!("{:.1}", a * 100.0),
                (0, 10),
                anchored(13, HPos::Center, VPos::Top),
            )
    }))?;
    Ok(())
}

/// Per-class accuracy sorted ascending, the worst classes highlighted and
/// listed by name beside the chart.
pub fn per_class(area: &Area, r: &EvalReport) -> DrawResult {
    let title = "Per-class accuracy (sorted)";
    let sorted = stats::sorted_accuracies(&r.per_class);
    if sorted.is_empty() {
        return no_data(area, title, "the report has no per-class results");
    }
    let worst = stats::worst_classes(&r.per_class, TOP);
    let (w, _) = area.dim_in_pixel();
    let (left, right) = area.split_horizontally(w as i32 - 290);
    let n = sorted.len();
    let mut chart = chart(&left, title, 64, 0f64..n as f64, 0f64..1.02f64)?;
    chart
        .configure_mesh()
        .y_label_formatter(&percent_axis)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc(format!("{n} classes, worst first"))
        .y_desc("top-1 accuracy")
        .label_style(font(15))
        .axis_desc_style(font(16))
        .draw()?;
    chart.draw_series(sorted.iter().enumerate().map(|(i, &a)| {
        let color = if i < worst.len() {
            ERROR_RED
        } else {
            PALETTE[0]
        };
        Rectangle::new([(i as f64, 0.0), ((i + 1) as f64, a)], color.filled())
    }))?;
    let mean = r.metrics.top1;
    chart
        .draw_series(LineSeries::new(
            [(0.0, mean), (n as f64, mean)],
            PALETTE[1].stroke_width(2),
        ))?
        .label(format!("overall top-1 {}", percent(mean)))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], PALETTE[1].stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    right.draw(&Text::new(
        format!("{} worst classes", worst.len()),
        (8, 60),
        (super::FONT, 17, FontStyle::Bold)
            .into_font()
            .color(&ERROR_RED),
    ))?;
    for (i, c) in worst.iter().enumerate() {
        let name = truncate(&class_name(c.index, &c.synset), 20);
        let line = format!(
            "{:>2}. {name}  {:.0}% ({}/{})",
            i + 1,
            c.accuracy * 100.0,
            c.correct,
            c.n
        );
        right.draw(&Text::new(line, (8, 92 + 28 * i as i32), font(14)))?;
    }
    Ok(())
}

/// Draws `labels` right-aligned left of the chart rows `0..labels.len()`
/// (row `i` centred at `i + 0.5` on the y axis of `chart`).
fn row_labels(
    area: &Area,
    chart: &ChartContext<BitMapBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    x0: f64,
    labels: &[String],
) -> DrawResult {
    for (i, label) in labels.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(x0, i as f64 + 0.5));
        let style = anchored(14, HPos::Right, VPos::Center);
        text_at(area, label.clone(), (px - 8, py), style)?;
    }
    Ok(())
}

/// The most-confused pairs as horizontal bars, "true → predicted".
pub fn confused_pairs(area: &Area, r: &EvalReport) -> DrawResult {
    let title = "Most-confused pairs (true → predicted)";
    let pairs = stats::most_confused(&r.confusion, TOP);
    if pairs.is_empty() {
        return no_data(area, title, "no image was misclassified");
    }
    let n = pairs.len();
    let max = pairs.iter().map(|e| e.count).max().unwrap_or(1) as f64;
    let mut chart = chart(area, title, 360, 0f64..max * 1.12, 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("images")
        .label_style(font(15))
        .axis_desc_style(font(16))
        .draw()?;
    // Most confused on top: pair 0 in the highest row.
    let row = |i: usize| (n - 1 - i) as f64;
    chart.draw_series(pairs.iter().enumerate().map(|(i, e)| {
        Rectangle::new(
            [(0.0, row(i) + 0.15), (e.count as f64, row(i) + 0.85)],
            PALETTE[1].filled(),
        )
    }))?;
    chart.draw_series(pairs.iter().enumerate().map(|(i, e)| {
        Text::new(
            e.count.to_string(),
            (e.count as f64 + max * 0.01, row(i) + 0.5),
            anchored(14, HPos::Left, VPos::Center),
        )
    }))?;
    let mut labels: Vec<String> = pairs
        .iter()
        .map(|e| {
            format!(
                "{} → {}",
                truncate(&class_name(e.true_index, &e.true_synset), 20),
                truncate(&class_name(e.predicted_index, &e.predicted_synset), 20)
            )
        })
        .collect();
    labels.reverse();
    row_labels(area, &chart, 0.0, &labels)
}

/// The confusion matrix restricted to the [`MATRIX_CLASSES`] classes with
/// the most errors; off-diagonal cells shaded by count, counts written.
pub fn confusion(area: &Area, r: &EvalReport) -> DrawResult {
    let m = stats::confusion_submatrix(&r.per_class, &r.confusion, MATRIX_CLASSES);
    let k = m.classes.len();
    let title = format!("Confusion among the {k} classes with the most errors");
    if k == 0 {
        return no_data(area, "Confusion matrix", "no image was misclassified");
    }
    let mut chart = chart(area, &title, 230, 0f64..k as f64, 0f64..k as f64)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(0)
        .x_desc("predicted (row number of the class)")
        .axis_desc_style(font(16))
        .draw()?;
    let max = m.max_off_diagonal().max(1) as f64;
    // Row 0 (most errors) on top.
    let y = |row: usize| (k - 1 - row) as f64;
    for (row, cells) in m.cells.iter().enumerate() {
        for (col, &count) in cells.iter().enumerate() {
            let fill = if row == col {
                RGBColor(225, 235, 225)
            } else {
                let t = count as f64 / max;
                let shade = |white: f64, full: f64| (white + (full - white) * t) as u8;
                RGBColor(shade(255.0, 200.0), shade(255.0, 40.0), shade(255.0, 40.0))
            };
            let (x0, y0) = (col as f64, y(row));
            chart.draw_series([
                Rectangle::new([(x0, y0), (x0 + 1.0, y0 + 1.0)], fill.filled()),
                Rectangle::new([(x0, y0), (x0 + 1.0, y0 + 1.0)], RGBColor(235, 235, 235)),
            ])?;
            if count > 0 {
                let color = if row != col && count as f64 / max > 0.6 {
                    WHITE
                } else {
                    BLACK
                };
                chart.draw_series([Text::new(
                    count.to_string(),
                    (x0 + 0.5, y0 + 0.5),
                    anchored(if k > 15 { 11 } else { 13 }, HPos::Center, VPos::Center)
                        .color(&color),
                )])?;
            }
        }
    }
    let mut labels: Vec<String> = m
        .classes
        .iter()
        .enumerate()
        .map(|(i, &c)| format!("{} {:>2}", truncate(&class_name(c, ""), 22), i + 1))
        .collect();
    labels.reverse();
    row_labels(area, &chart, 0.0, &labels)?;
    for col in 0..k {
        let (px, py) = chart.backend_coord(&(col as f64 + 0.5, 0.0));
        let style = anchored(12, HPos::Center, VPos::Top);
        text_at(area, (col + 1).to_string(), (px, py + 6), style)?;
    }
    Ok(())
}

/// Accuracy per confidence bin against the diagonal, with the ECE.
pub fn reliability(area: &Area, r: &EvalReport) -> DrawResult {
    let scored = stats::scored(r);
    if scored.is_empty() {
        return no_data(area, "Reliability", "no prediction in the report");
    }
    let rel = stats::reliability(&scored, RELIABILITY_BINS);
    let title = format!(
        "Reliability (ECE {:.2}%, {} bins, {} images)",
        rel.ece * 100.0,
        RELIABILITY_BINS,
        rel.samples
    );
    let mut chart = chart(area, &title, 64, 0f64..1f64, 0f64..1.02f64)?;
    chart
        .configure_mesh()
        .x_label_formatter(&percent_axis)
        .y_label_formatter(&percent_axis)
        .x_desc("confidence (top-1 probability)")
        .y_desc("accuracy")
        .label_style(font(15))
        .axis_desc_style(font(16))
        .draw()?;
    chart
        .draw_series(rel.bins.iter().filter(|b| b.count > 0).map(|b| {
            Rectangle::new(
                [(b.lo + 0.004, 0.0), (b.hi - 0.004, b.accuracy)],
                PALETTE[0].mix(0.75).filled(),
            )
        }))?
        .label("accuracy of the bin")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], PALETTE[0].filled()));
    // Where the bar would end if the bin were calibrated.
    chart
        .draw_series(rel.bins.iter().filter(|b| b.count > 0).map(|b| {
            PathElement::new(
                [(b.lo + 0.004, b.confidence), (b.hi - 0.004, b.confidence)],
                PALETTE[1].stroke_width(3),
            )
        }))?
        .label("mean confidence of the bin")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], PALETTE[1].stroke_width(3)));
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            GREY.stroke_width(2),
        ))?
        .label("perfect calibration")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREY.stroke_width(2)));
    chart.draw_series(rel.bins.iter().filter(|b| b.count > 0).map(|b| {
        Text::new(
            format!("n={}", b.count),
            (
                (b.lo + b.hi) / 2.0,
                b.accuracy.max(b.confidence).min(0.93) + 0.02,
            ),
            anchored(11, HPos::Center, VPos::Bottom),
        )
    }))?;
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

/// Accuracy of the predictions kept against the fraction kept, keeping the
/// most confident first.
pub fn coverage(area: &Area, r: &EvalReport) -> DrawResult {
    let title = "Accuracy vs coverage (most confident first)";
    let points = stats::coverage(&stats::scored(r));
    if points.is_empty() {
        return no_data(area, title, "no prediction in the report");
    }
    let lo = points.iter().map(|p| p.accuracy).fold(1.0, f64::min);
    let y = span(lo, 1.0, 0.08);
    let mut chart = chart(area, title, 64, 0f64..1.0f64, y.start..y.end.min(1.02))?;
    chart
        .configure_mesh()
        .x_label_formatter(&percent_axis)
        .y_label_formatter(&percent_axis)
        .x_desc("coverage (images kept)")
        .y_desc("accuracy of the images kept")
        .label_style(font(15))
        .axis_desc_style(font(16))
        .draw()?;
    let line: Vec<(f64, f64)> = points.iter().map(|p| (p.coverage, p.accuracy)).collect();
    chart.draw_series(LineSeries::new(line, PALETTE[0].stroke_width(3)))?;
    if points.len() == 1 {
        let p = points[0];
        chart.draw_series([Circle::new(
            (p.coverage, p.accuracy),
            5,
            PALETTE[0].filled(),
        )])?;
    }
    Ok(())
}
