//! The SVG plot of `replay --plot`: live Chrome processes and their RSS over the
//! simulated days, for both pools; with a memory budget, their PSS and the budget.

use std::path::Path;

use plotters::prelude::*;

use crate::engine::Sample;

/// Why the plot could not be written.
#[derive(Debug, thiserror::Error)]
#[error("could not draw the plot {path}: {message}")]
pub struct PlotError {
    /// The file.
    pub path: String,
    /// What the drawing backend said.
    pub message: String,
}

/// Draw live processes (top) and RSS in GB (bottom) against simulated days. With a
/// `budget` (bytes of PSS), the bottom chart shows PSS and the budget as a dashed line.
pub fn plot(
    path: &Path,
    title: &str,
    unmanaged: &[Sample],
    managed: &[Sample],
    budget: Option<u64>,
) -> Result<(), PlotError> {
    draw(path, title, unmanaged, managed, budget).map_err(|e| PlotError {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn draw(
    path: &Path,
    title: &str,
    unmanaged: &[Sample],
    managed: &[Sample],
    budget: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (top, bottom) = root.split_vertically(370);
    let days = |s: &Sample| s.t_ms as f64 / 86_400_000.0;
    let max_days = unmanaged
        .iter()
        .chain(managed)
        .map(days)
        .fold(0.01_f64, f64::max);
    let max_procs = unmanaged
        .iter()
        .chain(managed)
        .map(|s| s.processes)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let pss = budget.is_some();
    let gb = |s: &Sample| (if pss { s.pss_bytes } else { s.rss_bytes }) as f64 / 1e9;
    let budget_gb = budget.map(|b| b as f64 / 1e9);
    let max_gb = unmanaged
        .iter()
        .chain(managed)
        .map(gb)
        .fold(budget_gb.unwrap_or(0.1).max(0.1), f64::max)
        * 1.1;
    let series: [(&str, &[Sample], RGBColor); 2] = [
        ("unmanaged", unmanaged, RGBColor(214, 39, 40)),
        ("managed (browserpool)", managed, RGBColor(31, 119, 180)),
    ];

    let mut c = ChartBuilder::on(&top)
        .margin(12)
        .caption("live Chrome processes", ("sans-serif", 16))
        .x_label_area_size(32)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_days, 0.0..max_procs)?;
    c.configure_mesh().x_desc("simulated days").draw()?;
    for (name, data, color) in series {
        c.draw_series(LineSeries::new(
            data.iter().map(|s| (days(s), s.processes as f64)),
            color.stroke_width(2),
        ))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let mut c = ChartBuilder::on(&bottom)
        .margin(12)
        .caption(
            if pss {
                "PSS of our browsers (GB); dashed: the managed pool's memory_budget"
            } else {
                "RSS of our browsers (GB)"
            },
            ("sans-serif", 16),
        )
        .x_label_area_size(32)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_days, 0.0..max_gb)?;
    c.configure_mesh().x_desc("simulated days").draw()?;
    for (name, data, color) in series {
        c.draw_series(LineSeries::new(
            data.iter().map(|s| (days(s), gb(s))),
            color.stroke_width(2),
        ))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    if let Some(b) = budget_gb {
        c.draw_series(DashedLineSeries::new(
            [(0.0, b), (max_days, b)],
            8,
            6,
            BLACK.stroke_width(1),
        ))?
        .label("memory_budget")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
