//! The PNG plots of the report folder, drawn with plotters into an RGB
//! buffer, encoded with `png` and written atomically.
//!
//! Text uses DejaVu Sans embedded in the binary (the `dejavu` crate),
//! registered once as plotters' `sans-serif`: no system font is read.
//! Every plot is [`WIDTH`]×[`HEIGHT`]; a plot without data is an empty frame
//! with its title and a "no data" line ([`no_data`]), never a panic.
//!
//! [`accuracy`]: what the model got right and wrong; [`run`]: throughput
//! and GPU usage over time; [`envs`]: environments side by side.
//!
//! May use: `report_view::files`.

pub mod accuracy;
pub mod envs;
pub mod run;

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::files::{write_atomic, ReportViewError};

/// Width of every plot, pixels.
pub const WIDTH: u32 = 900;
/// Height of every plot, pixels.
pub const HEIGHT: u32 = 540;

/// The font family name the plots use (registered by [`fonts`]).
pub const FONT: &str = "sans-serif";

/// A plot's whole canvas.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// A chart with numeric axes on an [`Area`].
pub type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws the chart's legend (series labels) at `at`, framed.
pub fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, at: SeriesLabelPosition) -> DrawResult {
    chart
        .configure_series_labels()
        .position(at)
        .label_font(font(14))
        .background_style(WHITE.mix(0.9))
        .border_style(GREY)
        .draw()?;
    Ok(())
}

/// The report's chart on `area`: its caption, margin and x label area;
/// `y_labels` pixels for the y labels (wider where they are class names).
pub fn chart<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
    y_labels: u32,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    Ok(ChartBuilder::on(area)
        .caption(title, title_font())
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(y_labels)
        .build_cartesian_2d(x, y)?)
}
/// What a drawing step returns (plotters' errors are boxed).
pub type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Series colors, in order (Okabe–Ito: distinguishable by colour-blind
/// readers).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];
/// Grey of frames and secondary text.
pub const GREY: RGBColor = RGBColor(120, 120, 120);
/// Red of mistakes.
pub const ERROR_RED: RGBColor = RGBColor(200, 40, 40);

/// Registers the embedded font under [`FONT`] (once per process).
fn fonts() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ] {
            plotters::style::register_font(FONT, style, bytes)
                .map_err(|_| "the embedded DejaVu Sans font does not load".to_string())?;
        }
        Ok(())
    })
    .clone()
}

/// A text style of the plots' font.
pub fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// [`font`] anchored at `h`, `v`.
pub fn anchored(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    font(size).pos(Pos::new(h, v))
}

/// The title of a plot (caption) style.
pub fn title_font() -> TextStyle<'static> {
    (FONT, 22, FontStyle::Bold).into_font().color(&BLACK)
}

/// Draws a [`WIDTH`]×[`HEIGHT`] PNG with `draw` and writes it to `path`.
pub fn png(path: &Path, draw: impl FnOnce(&Area) -> DrawResult) -> Result<(), ReportViewError> {
    png_sized(path, (WIDTH, HEIGHT), draw)
}

/// Draws a `size` PNG with `draw` and writes it to `path` atomically.
pub fn png_sized(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area) -> DrawResult,
) -> Result<(), ReportViewError> {
    fonts().map_err(ReportViewError::draw(path))?;
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(ReportViewError::draw(path))?;
        draw(&root).map_err(ReportViewError::draw(path))?;
        root.present().map_err(ReportViewError::draw(path))?;
    }
    let bytes = encode(&rgb, (w, h)).map_err(ReportViewError::draw(path))?;
    write_atomic(path, &bytes)
}

/// RGB8 pixels as PNG bytes.
fn encode(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// An empty chart: `title`, a frame and "no data" with `why` under it.
pub fn no_data(area: &Area, title: &str, why: &str) -> DrawResult {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    area.draw(&Text::new(
        title.to_string(),
        (w / 2, 24),
        title_font().pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    area.draw(&Rectangle::new(
        [(40, 50), (w - 40, h - 40)],
        GREY.stroke_width(1),
    ))?;
    area.draw(&Text::new(
        "no data",
        (w / 2, h / 2 - 14),
        anchored(28, HPos::Center, VPos::Center).color(&GREY),
    ))?;
    area.draw(&Text::new(
        why.to_string(),
        (w / 2, h / 2 + 22),
        anchored(16, HPos::Center, VPos::Center).color(&GREY),
    ))?;
    Ok(())
}

/// Draws `text` at `at`, a backend (whole canvas) pixel as
/// `ChartContext::backend_coord` gives it, on `area` whose own coordinates
/// start at its top-left corner.
pub fn text_at(area: &Area, text: String, at: (i32, i32), style: TextStyle) -> DrawResult {
    let (bx, by) = area.get_base_pixel();
    area.draw(&Text::new(text, (at.0 - bx, at.1 - by), style))?;
    Ok(())
}

/// `[lo, hi]` widened so it is never empty (plotters needs `lo < hi`), with
/// `pad` (a fraction of the span) on both sides.
pub fn span(lo: f64, hi: f64, pad: f64) -> std::ops::Range<f64> {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo.min(hi), lo.max(hi))
    } else {
        (0.0, 1.0)
    };
    let extra = ((hi - lo) * pad).max(if hi == lo {
        hi.abs().max(1.0) * 0.05
    } else {
        0.0
    });
    (lo - extra)..(hi + extra)
}

/// `text` cut to `max` characters with an ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_never_empty() {
        assert_eq!(span(0.0, 1.0, 0.0), 0.0..1.0);
        let r = span(3.0, 3.0, 0.1);
        assert!(r.start < 3.0 && r.end > 3.0);
        let r = span(0.0, 0.0, 0.0);
        assert!(r.start < r.end);
        let r = span(f64::NAN, 2.0, 0.0);
        assert_eq!(r, 0.0..1.0);
    }

    #[test]
    fn long_names_are_cut_with_an_ellipsis() {
        assert_eq!(truncate("goldfish", 8), "goldfish");
        assert_eq!(truncate("great white shark", 8), "great w…");
    }
}
