//! Drawing [`App`]: header, per-table progress, throughput sparkline, log
//! pane, errors and fidelity pane, key help. Pure over the app state, so
//! tests render it with ratatui's `TestBackend`.

use mssql_pg_migrate_transfer::monitor::{Phase, TableProgress, count_text, eta_text};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, Wrap};

use crate::app::{App, RunPhase};

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    let bottom = if area.height >= 30 { 10 } else { 7 };
    let [header, tables, spark, panes, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(4),
        Constraint::Length(bottom),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, app, header);
    draw_tables(frame, app, tables);
    draw_sparkline(frame, app, spark);
    let [logs, problems] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(panes);
    draw_logs(frame, app, logs);
    draw_problems(frame, app, problems);
    draw_help(frame, app, help);
}

fn draw_header(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let reconnecting = app.snapshot.as_ref().and_then(|s| s.reconnecting.as_ref()).filter(|_| !app.is_finished());
    let (label, color) = match &app.phase {
        RunPhase::Running if reconnecting.is_some() => ("RECONNECTING".to_owned(), Color::Yellow),
        RunPhase::Running => ("RUNNING".to_owned(), Color::Green),
        RunPhase::Paused => ("PAUSED".to_owned(), Color::Yellow),
        RunPhase::Stopping => ("STOPPING".to_owned(), Color::Yellow),
        RunPhase::Finished { success: true, .. } => ("DONE".to_owned(), Color::Green),
        RunPhase::Finished { success: false, .. } => ("FAILED".to_owned(), Color::Red),
    };
    let mut spans = vec![
        Span::styled(format!(" {label} "), Style::default().fg(Color::Black).bg(color).add_modifier(Modifier::BOLD)),
        Span::raw(format!(" {} ", app.title)),
    ];
    if let Some(what) = reconnecting {
        spans.push(Span::styled(format!("| waiting for {what} "), Style::default().fg(Color::Yellow)));
    }
    if let Some(s) = &app.snapshot {
        let time = if app.is_finished() {
            format!("took {}", eta_text(Some(s.elapsed_seconds)))
        } else {
            format!("ETA {}", eta_text(s.eta_seconds))
        };
        spans.push(Span::raw(format!(
            "| {}/{} tables | {}/{} rows | {}/s | {time}",
            s.tables_done,
            s.tables_total,
            count_text(s.rows_done),
            count_text(s.rows_total),
            count_text(s.rows_per_second as u64),
        )));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_tables(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut rows: Vec<&TableProgress> = app.snapshot.as_ref().map(|s| s.tables.iter().collect()).unwrap_or_default();
    // What moves first, then what waits, then what is over.
    rows.sort_by_key(|t| match t.phase {
        Phase::Copying => 0,
        Phase::Failed => 1,
        Phase::Waiting => 2,
        Phase::Completed | Phase::Skipped => 3,
    });
    let title = match &app.snapshot {
        Some(s) => format!(" Tables ({}) ", s.tables_total),
        None => " Tables: reading the catalog… ".to_owned(),
    };
    let visible = usize::from(area.height.saturating_sub(3));
    let first = app.scroll.min(rows.len().saturating_sub(visible.max(1)));
    let body = rows.iter().skip(first).take(visible).map(|t| {
        let fraction = if t.rows_total == 0 {
            if t.phase == Phase::Completed { 1.0 } else { 0.0 }
        } else {
            t.rows_done as f64 / t.rows_total as f64
        };
        let (status, color) = match t.phase {
            Phase::Waiting => ("waiting", Color::DarkGray),
            Phase::Copying => ("copying", Color::Cyan),
            Phase::Completed => ("done", Color::Green),
            Phase::Failed => ("FAILED", Color::Red),
            Phase::Skipped => ("skipped", Color::Yellow),
        };
        Row::new(vec![
            Cell::from(t.table.clone()),
            Cell::from(status).style(Style::default().fg(color)),
            Cell::from(format!("{} {:>3.0}%", bar(fraction, 10), fraction * 100.0)),
            Cell::from(format!("{:>7}", count_text(t.rows_done))),
            Cell::from(format!("{:>7}", count_text(t.rows_per_second as u64))),
            Cell::from(format!(
                "{:>6}",
                if t.phase == Phase::Copying { eta_text(t.eta_seconds) } else { String::new() }
            )),
        ])
    });
    let header = Row::new(vec!["table", "status", "progress", "rows", "rows/s", "ETA"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Min(12),
        Constraint::Length(7),
        Constraint::Length(15),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
    ];
    let table = Table::new(body, widths).header(header).block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(table, area);
}

fn draw_sparkline(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let width = usize::from(area.width.saturating_sub(2));
    let data: Vec<u64> = app.throughput.iter().rev().take(width).rev().copied().collect();
    let peak = data.iter().copied().max().unwrap_or(0);
    let now = data.last().copied().unwrap_or(0);
    let title = format!(" Throughput: {}/s now, {}/s peak ", count_text(now), count_text(peak));
    let spark = Sparkline::default()
        .block(Block::default().borders(Borders::ALL).title(title))
        .data(&data)
        .style(Style::default().fg(Color::Cyan));
    frame.render_widget(spark, area);
}

fn draw_logs(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let lines = usize::from(area.height.saturating_sub(2));
    let shown: Vec<Line<'_>> = app.logs.iter().rev().take(lines).rev().map(|l| Line::raw(l.as_str())).collect();
    let pane = Paragraph::new(shown).block(Block::default().borders(Borders::ALL).title(" Log "));
    frame.render_widget(pane, area);
}

fn draw_problems(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let errors = app.problems.iter().filter(|p| p.error).count();
    let title = format!(" Errors {errors} · fidelity {} ", app.problems.len() - errors);
    let lines: Vec<Line<'_>> = app
        .problems
        .iter()
        .map(|p| {
            let style = if p.error { Style::default().fg(Color::Red) } else { Style::default().fg(Color::Yellow) };
            Line::styled(p.text.as_str(), style)
        })
        .collect();
    let pane =
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(pane, area);
}

fn draw_help(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let text = match &app.phase {
        RunPhase::Running => " p pause · c cancel · q quit (cancels first) · ↑↓ scroll".to_owned(),
        RunPhase::Paused => " p resume · c cancel · q quit · paused: no new chunks start".to_owned(),
        RunPhase::Stopping if app.quit_when_stopped => {
            " stopping: chunks in flight finish, then the state is saved · q again: stop now".to_owned()
        }
        RunPhase::Stopping => " stopping: chunks in flight finish, then the state is saved · q quit".to_owned(),
        RunPhase::Finished { summary, .. } => format!(" {summary} · q quit"),
    };
    frame.render_widget(Paragraph::new(text).style(Style::default().add_modifier(Modifier::REVERSED)), area);
}

fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use mssql_pg_migrate_transfer::monitor::Monitor;
    use mssql_pg_migrate_transfer::report::TableStatus;
    use mssql_pg_migrate_transfer::{Event, PlannedTable};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    /// A run 10 s in: Posts copying, Users done, Votes waiting.
    fn mid_run() -> App {
        let t0 = Instant::now();
        let mut monitor = Monitor::new(t0);
        let planned = |name: &str, rows: u64| PlannedTable {
            source: name.into(),
            target: format!("public.{}", name.trim_start_matches("dbo.").to_lowercase()),
            estimated_rows: rows,
            partitions: 4,
            rows_done: 0,
        };
        let events = [
            Event::Planned {
                run_id: "run-42".into(),
                resumed: false,
                tables: vec![
                    planned("dbo.Posts", 4_000_000),
                    planned("dbo.Users", 300_000),
                    planned("dbo.Votes", 9_000_000),
                ],
            },
            Event::ChunkStarted { table: "dbo.Users".into(), partition: 0 },
            Event::ChunkStarted { table: "dbo.Posts".into(), partition: 0 },
            Event::ChunkCommitted { table: "dbo.Users".into(), partition: 0, rows: 300_000, bytes: 30_000_000 },
            Event::TableFinished { table: "dbo.Users".into(), status: TableStatus::Completed, error: None },
            Event::ChunkCommitted { table: "dbo.Posts".into(), partition: 0, rows: 1_000_000, bytes: 900_000_000 },
        ];
        let mut app = App::new("sql1:1433/StackOverflow → pg1:5432/so");
        for (i, e) in events.iter().enumerate() {
            monitor.apply(e, t0 + Duration::from_secs(i as u64));
            app.on_event(e);
        }
        for tick in 1..=20u64 {
            // A steady 130k rows/s, as the sparkline should show.
            let mut s = monitor.snapshot(t0 + Duration::from_millis(500 * tick));
            s.rows_done = tick * 65_000;
            app.on_tick(s, t0 + Duration::from_millis(500 * tick));
        }
        app.on_tick(monitor.snapshot(t0 + Duration::from_secs(10)), t0 + Duration::from_secs(10));
        app.on_log("INFO planned tables=3".into());
        app.on_log("INFO copying dbo.Posts partitions=4".into());
        app
    }

    fn screen(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, app)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..height {
            for x in 0..width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn mid_run_at_80_by_24_shows_every_pane() {
        let text = screen(&mid_run(), 80, 24);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(" RUNNING  sql1:1433/StackOverflow → pg1:5432/so"), "{text}");
        assert!(lines[0].contains("1/3 tables"), "{text}");
        assert!(text.contains("Tables (3)"), "{text}");
        // Copying first, with its share of the estimate.
        let posts = lines.iter().position(|l| l.contains("dbo.Posts")).unwrap();
        let users = lines.iter().position(|l| l.contains("dbo.Users")).unwrap();
        assert!(posts < users, "{text}");
        assert!(lines[posts].contains("copying") && lines[posts].contains(" 25%") && lines[posts].contains("1.0M"));
        assert!(lines[users].contains("done") && lines[users].contains("100%"), "{text}");
        assert!(text.contains("Throughput: 130.0k/s now"), "{text}");
        assert!(text.contains("copying dbo.Posts partitions=4"), "{text}");
        assert!(text.contains("Errors 0 · fidelity 0"), "{text}");
        assert!(lines[23].contains("p pause · c cancel · q quit"), "{text}");
    }

    #[test]
    fn after_an_error_at_120_by_40_the_failure_is_named() {
        let mut app = mid_run();
        let failed = Event::TableFinished {
            table: "dbo.Votes".into(),
            status: TableStatus::Failed,
            error: Some("source server, reading dbo.Votes: error 229: SELECT permission denied".into()),
        };
        app.on_event(&failed);
        let mut s = app.snapshot.clone().unwrap();
        s.tables[2].phase = Phase::Failed;
        app.on_tick(s, Instant::now() + Duration::from_secs(11));
        app.finish(false, "1 table(s) did not complete: dbo.Votes (exit 3)");
        let text = screen(&app, 120, 40);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(" FAILED "), "{text}");
        assert!(lines[0].contains("| took 10s"), "a finished run shows its time, not an ETA: {text}");
        assert!(text.contains("Errors 1 · fidelity 0"), "{text}");
        // Wrapped to the pane, so the start of the message is checked.
        assert!(text.contains("dbo.Votes: source server, reading dbo.Votes: error"), "{text}");
        assert!(text.contains("229: SELECT permission denied"), "{text}");
        let votes = lines.iter().position(|l| l.contains("dbo.Votes") && l.contains("FAILED")).unwrap();
        let posts = lines.iter().position(|l| l.contains("dbo.Posts")).unwrap();
        assert!(posts < votes, "copying before failed: {text}");
        assert!(lines[39].contains("1 table(s) did not complete: dbo.Votes (exit 3) · q quit"), "{text}");
    }

    #[test]
    fn a_server_being_reconnected_to_is_shown_until_work_goes_on() {
        let mut app = mid_run();
        let outage = |attempt| Event::Retrying {
            what: "dbo.Posts".into(),
            attempt,
            outage: true,
            error: "target server: connection refused".into(),
        };
        app.on_event(&outage(3));
        let mut s = app.snapshot.clone().unwrap();
        s.reconnecting = Some("dbo.Posts (attempt 3)".into());
        app.on_tick(s.clone(), Instant::now() + Duration::from_secs(11));
        let text = screen(&app, 100, 24);
        let first = text.lines().next().unwrap();
        assert!(first.starts_with(" RECONNECTING ") && first.contains("waiting for dbo.Posts (attempt 3)"), "{text}");
        s.reconnecting = None;
        app.on_tick(s, Instant::now() + Duration::from_secs(12));
        assert!(screen(&app, 100, 24).starts_with(" RUNNING "));
    }

    #[test]
    fn a_tiny_terminal_does_not_panic() {
        let text = screen(&mid_run(), 20, 8);
        assert_eq!(text.lines().count(), 8);
    }

    #[test]
    fn bars_fill_in_proportion_and_never_overflow() {
        assert_eq!(bar(0.25, 8), "██░░░░░░");
        assert_eq!(bar(1.5, 4), "████");
    }
}
