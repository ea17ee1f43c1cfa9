//! `leukoscope serve`: the device's web page (live view, count, review, sign-off, reports, calibration).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use leukoscope::session::SessionConfig;
use leukoscope::web::app::App;
use leukoscope::web::device::{Bench, Device};
use leukoscope::web::routes;
use leukoscope::Pipeline;

use super::ModelArg;

#[derive(clap::Args)]
pub struct Args {
    /// Use the simulated microscope (a folder of smear frames as the slide).
    #[arg(long, conflicts_with = "board")]
    sim: bool,
    /// Slide for --sim: a folder of smear images (default: the bundled samples/smears).
    #[arg(long, requires = "sim")]
    slide: Option<PathBuf>,
    /// Simulator seed (hidden best focus, noise).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Board file (pin map, motors, camera) for a Raspberry Pi; needs the `rpi` feature.
    #[arg(long)]
    board: Option<PathBuf>,
    /// Address to listen on. Beyond loopback (e.g. 0.0.0.0:8080) every page needs a signed-in operator.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The device's data folder: journals (counts/), operators (users), calibration exports.
    #[arg(long)]
    data: PathBuf,
    /// Refocus every N fields of a count (0: only on the first).
    #[arg(long, default_value_t = 1)]
    refocus_every: u32,
    #[command(flatten)]
    model: ModelArg,
}

/// A path as the journal records it (absolute when it exists, so a resume from elsewhere matches).
fn recorded(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_owned())
        .display()
        .to_string()
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut cfg = SessionConfig {
        refocus_every: args.refocus_every,
        ..SessionConfig::default()
    };
    let (device, source): (Box<dyn Device>, String) = if args.sim {
        use leukoscope::board::sim::{microscope, SimConfig, Slide};
        let mut sim = SimConfig::bundled();
        if let Some(slide) = &args.slide {
            sim.slide = Slide::Path(slide.clone());
        }
        sim.seed = args.seed;
        sim.grid = Some(cfg.grid);
        let slide = match &sim.slide {
            Slide::Path(p) => recorded(p),
            bundled => bundled.to_string(),
        };
        let source = format!(
            "sim slide={slide} seed={} grid={}x{}",
            sim.seed, cfg.grid.0, cfg.grid.1
        );
        let (scope, handle) = microscope(sim)?;
        (Box::new(Bench::new(scope, Box::new(handle))), source)
    } else if let Some(board) = &args.board {
        board_device(board, &mut cfg)?
    } else {
        anyhow::bail!(
            "say which microscope to serve: --sim, or --board board.toml on a Raspberry Pi"
        );
    };
    let pipeline = Pipeline::new(args.model.classifier()?);
    let open = !args.listen.ip().is_loopback();
    let app = App::new(&args.data, device, pipeline, source, cfg, open)
        .with_context(|| format!("{}: cannot use as the data folder", args.data.display()))?;
    let users = app.users.list().unwrap_or_default();
    if users.is_empty() {
        eprintln!(
            "warning: no operator yet: add one with `leukoscope user add NAME --data {}`",
            args.data.display()
        );
    }
    let app = Arc::new(app);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let listen = args.listen;
    let served = Arc::clone(&app);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        eprintln!("listening on http://{addr}");
        routes::serve(served, listener, shutdown()).await?;
        anyhow::Ok(())
    })?;
    // A count still running is paused at its next field, so its journal says why it stopped.
    if app.pause(false).is_ok() {
        eprintln!("pausing the running count (every counted cell is in its journal)");
        let t = Instant::now();
        while app.progress().is_some_and(|p| {
            matches!(
                p.phase,
                leukoscope::web::app::Phase::Running | leukoscope::web::app::Phase::Stopping
            )
        }) && t.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM (systemd's stop).
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("stopping the server");
}

#[cfg(feature = "rpi")]
fn board_device(
    board: &Path,
    cfg: &mut SessionConfig,
) -> anyhow::Result<(Box<dyn Device>, String)> {
    use leukoscope::board::config::BoardConfig;
    let bc = BoardConfig::load(board)?;
    if let Some(st) = &bc.stage {
        cfg.grid = st.grid;
        cfg.pitch = st.field_pitch;
    }
    let (scope, keep) = leukoscope::board::rpi::Board::open(&bc)?.into_parts();
    let source = format!("rpi board={}", recorded(board));
    Ok((Box::new(Bench::new(scope, keep)), source))
}

#[cfg(not(feature = "rpi"))]
fn board_device(
    board: &Path,
    _cfg: &mut SessionConfig,
) -> anyhow::Result<(Box<dyn Device>, String)> {
    // Check the file anyway, so a typo is reported even on a host build.
    leukoscope::board::config::BoardConfig::load(board)?;
    anyhow::bail!(
        "{}: this leukoscope was built without Raspberry Pi support; rebuild with `--features rpi` \
         (scripts/cross.sh)",
        board.display()
    )
}
