//! A whole differential in a real browser: headless Chromium driven over WebDriver (chromedriver, both
//! from Debian, installed by `scripts/setup.sh`). Sign in, count 30 cells on the simulator and watch the
//! progress reach 30, reclassify an unidentified cell with the keyboard, confirm the others, sign off,
//! then fetch the CSV and FHIR reports in the page's session and check the changed count in both.
//!
//! Screenshots of each page go to `$LEUKOSCOPE_SCREENSHOTS` when set (the README's are made so:
//! `LEUKOSCOPE_SCREENSHOTS=docs/screenshots cargo test -p leukoscope --test browser`), else a scratch folder.
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

mod support;
use support::{add_user, scratch, Server, PASSWORD, USER};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_browser(profile: &Path) -> (Driver, Client) {
    let driver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| which(&["chromedriver"]))
        .expect("chromedriver is not installed: run scripts/setup.sh (apt chromium-driver)");
    let chrome = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| which(&["chromium", "chromium-browser", "google-chrome"]))
        .expect("chromium is not installed: run scripts/setup.sh (apt chromium)");
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(child);
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("pageLoadStrategy".into(), json!("eager"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chrome,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) if t.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("cannot start a Chromium session: {e}"),
        }
    }
}

async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Waits until `css` has text for which `ok` holds; returns it.
async fn wait_text(c: &Client, css: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    loop {
        if let Some(s) = text(c, css).await {
            if ok(&s) {
                return s;
            }
        }
        if t.elapsed() > limit {
            panic!(
                "{css} never became what was waited for; page: {}",
                c.source().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn shot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn press(c: &Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys).await.expect("key press");
}

/// The CSV and FHIR reports, fetched by the page itself (its session cookie).
async fn reports(c: &Client, sample: &str) -> (String, Value) {
    let v = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             Promise.all([fetch(arguments[0]).then(r => r.text()), fetch(arguments[1]).then(r => r.text())])\
               .then(done, e => done(['error ' + e, '{}']));",
            vec![
                json!(format!("/counts/{sample}/report/csv")),
                json!(format!("/counts/{sample}/report/fhir")),
            ],
        )
        .await
        .expect("the page fetches its reports");
    let csv = v[0].as_str().unwrap().to_string();
    let fhir = serde_json::from_str(v[1].as_str().unwrap()).expect("FHIR JSON");
    (csv, fhir)
}

fn neutrophils_csv(csv: &str) -> usize {
    csv.lines()
        .filter(|l| !l.starts_with('#') && l.ends_with(",true,"))
        .filter_map(|l| l.rsplit_once("\","))
        .filter(|(_, rest)| rest.split(',').nth(5) == Some("NEUTROPHIL"))
        .count()
}

fn neutrophil_percent(fhir: &Value) -> f64 {
    fhir["contained"]
        .as_array()
        .expect("observations")
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "26511-6")
        .expect("a neutrophil observation")["valueQuantity"]["value"]
        .as_f64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technologist_does_a_whole_differential_in_chromium() {
    let data = scratch("browser");
    add_user(&data, USER, PASSWORD);
    let shots = std::env::var_os("LEUKOSCOPE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| data.join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let server = Server::start(&data, "127.0.0.1:0", &[]);
    let base = server.base.clone();
    let (_driver, c) = start_browser(&data.join("profile")).await;
    let go = |path: &str| format!("{base}{path}");

    // Sign in.
    c.goto(&go("/signin")).await.unwrap();
    shot(&c, &shots, "signin").await;
    c.find(Locator::Id("user"))
        .await
        .unwrap()
        .send_keys(USER)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Id("signin"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "header span", Duration::from_secs(20), |s| s == USER).await;

    // Start a 30-cell count and watch it reach 30.
    c.find(Locator::Id("sample"))
        .await
        .unwrap()
        .send_keys("B-1")
        .await
        .unwrap();
    let target = c.find(Locator::Id("target")).await.unwrap();
    target.clear().await.unwrap();
    target.send_keys("30").await.unwrap();
    c.find(Locator::Id("start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#counted", Duration::from_secs(60), |s| {
        s.split(" / ")
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 5)
    })
    .await;
    shot(&c, &shots, "count").await;
    wait_text(&c, "#counted", Duration::from_secs(300), |s| s == "30 / 30").await;
    wait_text(&c, "#phase", Duration::from_secs(30), |s| s == "finished").await;

    // The live view.
    c.goto(&go("/live")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // What the operator sees: a frame, lit (mean brightness of the stream's image on a canvas).
    let mean = c
        .execute(
            "const i = document.getElementById('stream'); if (!i.naturalWidth) return -1;\
             const c = document.createElement('canvas'); c.width = 64; c.height = 48;\
             const g = c.getContext('2d'); g.drawImage(i, 0, 0, 64, 48);\
             const d = g.getImageData(0, 0, 64, 48).data; let s = 0;\
             for (let k = 0; k < d.length; k += 4) s += d[k] + d[k + 1] + d[k + 2];\
             return s / (3 * 64 * 48);",
            vec![],
        )
        .await
        .unwrap();
    let mean = mean.as_f64().unwrap_or(-1.0);
    assert!(
        mean > 40.0,
        "the live view shows no lit frame (mean brightness {mean})"
    );
    shot(&c, &shots, "live").await;

    // Review: reclassify one cell as a neutrophil with its key, confirm the other unidentified ones.
    c.goto(&go("/counts/B-1")).await.unwrap();
    let (csv0, fhir0) = reports(&c, "B-1").await;
    assert_eq!(fhir0["status"], "preliminary");
    let n0 = neutrophils_csv(&csv0);
    shot(&c, &shots, "review").await;
    let key = c
        .find(Locator::Id("v-NEUTROPHIL"))
        .await
        .unwrap()
        .attr("data-key")
        .await
        .unwrap()
        .unwrap();
    let pick = match c.find(Locator::Css("#g-UNIDENTIFIED .cell")).await {
        Ok(t) => t,
        Err(_) => c
            .find(Locator::Css(
                "#g-EOSINOPHIL .cell, #g-LYMPHOCYTE .cell, #g-MONOCYTE .cell",
            ))
            .await
            .expect("a cell that is not a neutrophil"),
    };
    let id = pick.attr("id").await.unwrap().unwrap();
    pick.click().await.unwrap();
    press(&c, key.chars().next().unwrap()).await;
    let moved = format!("#g-NEUTROPHIL #{id}");
    let t = Instant::now();
    while c.find(Locator::Css(&moved)).await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{id} did not move to NEUTROPHIL"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..30 {
        let Ok(open) = c
            .find(Locator::Css("#g-UNIDENTIFIED .cell:not(.rev)"))
            .await
        else {
            break;
        };
        let oid = open.attr("id").await.unwrap().unwrap();
        open.click().await.unwrap();
        press(&c, 'u').await;
        let done = format!("#g-UNIDENTIFIED #{oid}.rev");
        let t = Instant::now();
        while c.find(Locator::Css(&done)).await.is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{oid} was not confirmed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Sign off.
    c.find(Locator::Id("sign"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#status", Duration::from_secs(20), |s| {
        s.starts_with("signed by")
    })
    .await;
    shot(&c, &shots, "signed").await;

    // The reports say so.
    let (csv1, fhir1) = reports(&c, "B-1").await;
    assert_eq!(neutrophils_csv(&csv1), n0 + 1, "{csv1}");
    assert_eq!(fhir1["status"], "final", "{fhir1}");
    assert_eq!(fhir1["resultsInterpreter"][0]["display"], USER);
    assert!(
        neutrophil_percent(&fhir1) > neutrophil_percent(&fhir0),
        "{} then {}",
        neutrophil_percent(&fhir0),
        neutrophil_percent(&fhir1)
    );

    c.goto(&go("/calibrate")).await.unwrap();
    shot(&c, &shots, "calibrate").await;
    c.goto(&go("/")).await.unwrap();
    wait_text(&c, "#samples", Duration::from_secs(10), |s| {
        s.contains("signed by")
    })
    .await;
    c.close().await.unwrap();
    drop(server);
}
