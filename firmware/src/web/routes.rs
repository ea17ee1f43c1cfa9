//! The HTTP side: routes, the session cookie, the CSRF check and the responses.
//!
//! Every state-changing request is a `POST` of a urlencoded form and is checked in this order: a live
//! session (401 otherwise), a readable form within [`BODY_LIMIT`] (400 or 413), then the form's `csrf`
//! field against the session's token (403). Pages (`GET`) need a session only when the server listens
//! beyond loopback ([`App::pages_need_session`]). Nothing is done before those checks pass.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};

use super::app::{App, Refusal};
use super::auth::{same_secret, token, Session};
use super::pages;
use crate::report::{self, Report};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 16 * 1024;
/// The session cookie.
pub const SESSION_COOKIE: &str = "lk_session";
/// The sign-in form's own CSRF cookie (double submit: there is no session yet).
pub const SIGNIN_COOKIE: &str = "lk_signin";

type Shared = State<Arc<App>>;
type FormResult = Result<Form<Vec<(String, String)>>, FormRejection>;

/// The server's routes over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/live", get(live))
        .route("/live.jpg", get(live_jpg))
        .route("/live.mjpeg", get(live_mjpeg))
        .route("/live/{action}", post(live_action))
        .route("/count/{action}", post(count_action))
        .route("/progress", get(progress_fragment))
        .route("/api/progress", get(progress_json))
        .route("/counts/{sample}", get(review_page))
        .route("/counts/{sample}/{action}", post(sample_action))
        .route("/counts/{sample}/crop/{frame}/{index}", get(crop))
        .route("/counts/{sample}/report/{format}", get(report_file))
        .route("/calibrate", get(calibrate_page).post(calibrate))
        .route("/calibrate/{file}", get(calibrate_tar))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn session(app: &App, h: &HeaderMap) -> Option<Session> {
    app.sessions.get(cookie(h, SESSION_COOKIE)?)
}

fn page(status: StatusCode, message: &str, s: Option<&Session>) -> Response {
    (status, Html(pages::error(message, s))).into_response()
}

fn refused(r: Refusal, s: Option<&Session>) -> Response {
    page(r.status, &r.message, s)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Html(pages::layout(
            "Sign in",
            None,
            "<p class=\"err\">Sign in first.</p><p><a href=\"/signin\">Sign in</a></p>",
        )),
    )
        .into_response()
}

/// Who is looking at a page: `Err` (401) when pages need a session and there is none.
fn viewer(app: &App, h: &HeaderMap) -> Result<Option<Session>, Box<Response>> {
    let s = session(app, h);
    if s.is_none() && app.pages_need_session {
        return Err(Box::new(unauthorized()));
    }
    Ok(s)
}

/// A form's fields, in order.
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn need(&self, name: &str) -> Result<&str, Refusal> {
        self.get(name)
            .ok_or_else(|| Refusal::bad(format!("the form has no field {name:?}")))
    }

    fn number<T: FromStr>(&self, name: &str) -> Result<T, Refusal> {
        let v = self.need(name)?;
        v.trim()
            .parse()
            .map_err(|_| Refusal::bad(format!("field {name:?}: {v:?} is not a usable number")))
    }
}

/// The checks of every state-changing request: session (401), form (400/413), CSRF token (403).
fn actor(app: &App, h: &HeaderMap, form: FormResult) -> Result<(Session, Fields), Box<Response>> {
    let Some(s) = session(app, h) else {
        return Err(Box::new(unauthorized()));
    };
    let fields = match form {
        Ok(Form(v)) => Fields(v),
        Err(r) => {
            return Err(Box::new(page(
                r.status(),
                &format!("the form could not be read: {}", r.body_text()),
                Some(&s),
            )))
        }
    };
    match fields.get("csrf") {
        Some(t) if same_secret(t, &s.csrf) => Ok((s, fields)),
        _ => Err(Box::new(page(
            StatusCode::FORBIDDEN,
            "this form does not belong to your session (an old page, or another site): reload the page and try again",
            Some(&s),
        ))),
    }
}

/// Runs blocking work (disk, camera, argon2) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Refusal::failed(format!("the request failed: {e}"))))
}

fn back(to: &str, message: &str) -> Response {
    let q = serde_urlencoded::to_string([("msg", message)]).unwrap_or_default();
    let sep = if to.contains('?') { '&' } else { '?' };
    let (path, anchor) = to
        .split_once('#')
        .map_or((to, String::new()), |(p, a)| (p, format!("#{a}")));
    Redirect::to(&format!("{path}{sep}{q}{anchor}")).into_response()
}

#[derive(serde::Deserialize)]
struct Msg {
    msg: Option<String>,
}

async fn not_found(State(app): Shared, h: HeaderMap) -> Response {
    let s = session(&app, &h);
    page(StatusCode::NOT_FOUND, "no such page", s.as_ref())
}

async fn index(State(app): Shared, h: HeaderMap, Query(q): Query<Msg>) -> Response {
    let s = match viewer(&app, &h) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let msg = q.msg;
    Html(pages::index(&app, s.as_ref(), msg.as_deref())).into_response()
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map_or(String::new(), |a| format!("; Max-Age={a}"));
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

async fn signin_page(Query(q): Query<Msg>) -> Response {
    let pre = token();
    let msg = q.msg;
    let mut r = Html(pages::signin(&pre, msg.as_deref())).into_response();
    r.headers_mut()
        .insert(SET_COOKIE, set_cookie(SIGNIN_COOKIE, &pre, Some(3600)));
    r
}

async fn signin(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    form: FormResult,
) -> Response {
    let fields = match form {
        Ok(Form(v)) => Fields(v),
        Err(r) => {
            return page(
                r.status(),
                &format!("the form could not be read: {}", r.body_text()),
                None,
            )
        }
    };
    match (cookie(&h, SIGNIN_COOKIE), fields.get("csrf")) {
        (Some(a), Some(b)) if same_secret(a, b) => {}
        _ => return page(
            StatusCode::FORBIDDEN,
            "this sign-in form is not from this device's sign-in page: open /signin and try again",
            None,
        ),
    }
    let (Some(user), Some(password)) = (fields.get("user"), fields.get("password")) else {
        return page(
            StatusCode::BAD_REQUEST,
            "give an operator and a password",
            None,
        );
    };
    let (user, password) = (user.trim().to_string(), password.to_string());
    let ip = peer.ip().to_string();
    if let Some(wait) = app.sessions.wait(&[&user, &ip]) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many failed sign-ins: wait {} s and try again",
                wait.as_secs().max(1)
            ),
            None,
        );
    }
    let a = Arc::clone(&app);
    let u = user.clone();
    let ok = blocking(move || {
        a.users
            .verify(&u, &password)
            .map_err(|e| Refusal::failed(e.to_string()))
    })
    .await;
    match ok {
        Ok(true) => {
            app.sessions.attempt(&[&user, &ip], true);
            let t = app.sessions.start(&user);
            let mut r = Redirect::to("/").into_response();
            let hs = r.headers_mut();
            hs.append(SET_COOKIE, set_cookie(SESSION_COOKIE, &t, None));
            hs.append(SET_COOKIE, set_cookie(SIGNIN_COOKIE, "", Some(0)));
            r
        }
        Ok(false) => {
            app.sessions.attempt(&[&user, &ip], false);
            let pre = token();
            let mut r = (
                StatusCode::UNAUTHORIZED,
                Html(pages::signin(&pre, Some("wrong operator or password"))),
            )
                .into_response();
            r.headers_mut()
                .insert(SET_COOKIE, set_cookie(SIGNIN_COOKIE, &pre, Some(3600)));
            r
        }
        Err(e) => refused(e, None),
    }
}

async fn signout(State(app): Shared, h: HeaderMap, form: FormResult) -> Response {
    if let Err(r) = actor(&app, &h, form) {
        return *r;
    }
    if let Some(t) = cookie(&h, SESSION_COOKIE) {
        app.sessions.end(t);
    }
    let mut r = Redirect::to("/signin").into_response();
    r.headers_mut()
        .insert(SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0)));
    r
}

async fn live(State(app): Shared, h: HeaderMap, Query(q): Query<Msg>) -> Response {
    let s = match viewer(&app, &h) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let msg = q.msg;
    Html(pages::live(&app, s.as_ref(), msg.as_deref())).into_response()
}

async fn live_jpg(State(app): Shared, h: HeaderMap) -> Response {
    let s = match viewer(&app, &h) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let a = Arc::clone(&app);
    match blocking(move || a.live_jpeg()).await {
        Ok(j) => (
            [(CONTENT_TYPE, "image/jpeg"), (CACHE_CONTROL, "no-store")],
            Bytes::from(j.as_ref().clone()),
        )
            .into_response(),
        Err(e) => refused(e, s.as_ref()),
    }
}

async fn live_mjpeg(State(app): Shared, h: HeaderMap) -> Response {
    if let Err(r) = viewer(&app, &h) {
        return *r;
    }
    let stream = futures_util::stream::unfold((app, true), |(app, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let a = Arc::clone(&app);
        let part = match blocking(move || a.live_jpeg()).await {
            Ok(j) => {
                let mut v = format!(
                    "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    j.len()
                )
                .into_bytes();
                v.extend_from_slice(&j);
                v.extend_from_slice(b"\r\n");
                v
            }
            Err(_) => Vec::new(),
        };
        Some((Ok::<_, std::io::Error>(Bytes::from(part)), (app, false)))
    });
    Response::builder()
        .header(CONTENT_TYPE, "multipart/x-mixed-replace; boundary=frame")
        .header(CACHE_CONTROL, "no-store")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn live_action(
    State(app): Shared,
    Path(action): Path<String>,
    h: HeaderMap,
    form: FormResult,
) -> Response {
    let (s, f) = match actor(&app, &h, form) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let a = Arc::clone(&app);
    let done = async {
        match action.as_str() {
            "focus" => {
                let steps: i32 = f.number("steps")?;
                blocking(move || a.focus_by(steps)).await
            }
            "autofocus" => blocking(move || a.autofocus()).await,
            "light" => {
                let p: u16 = f.number("permille")?;
                blocking(move || a.set_light(p)).await
            }
            "stage" => {
                let (dx, dy): (i32, i32) = (f.number("dx")?, f.number("dy")?);
                blocking(move || a.stage_by(dx, dy)).await
            }
            other => Err(Refusal::not_found(format!("no live action {other:?}"))),
        }
    };
    match done.await {
        Ok(msg) => back("/live", &msg),
        Err(e) => refused(e, Some(&s)),
    }
}

async fn count_action(
    State(app): Shared,
    Path(action): Path<String>,
    h: HeaderMap,
    form: FormResult,
) -> Response {
    let (s, f) = match actor(&app, &h, form) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let a = Arc::clone(&app);
    let done = async {
        match action.as_str() {
            "start" => {
                let sample = f.need("sample")?.trim().to_string();
                let target: u32 = f.number("target")?;
                blocking(move || {
                    a.start(&sample, target, false)
                        .map(|_| format!("counting {sample}"))
                })
                .await
            }
            "resume" => {
                let sample = f.need("sample")?.trim().to_string();
                blocking(move || {
                    a.start(&sample, 0, true)
                        .map(|_| format!("resumed {sample}"))
                })
                .await
            }
            "pause" => a
                .pause(false)
                .map(|_| "pausing after this field".to_string()),
            "stop" => match f.get("sample").map(str::trim).filter(|x| !x.is_empty()) {
                Some(sample) => {
                    let sample = sample.to_string();
                    blocking(move || {
                        a.stop_idle(&sample)
                            .map(|_| format!("{sample} finished as it is"))
                    })
                    .await
                }
                None => a
                    .pause(true)
                    .map(|_| "stopping after this field".to_string()),
            },
            other => Err(Refusal::not_found(format!("no count action {other:?}"))),
        }
    };
    match done.await {
        Ok(msg) => back("/", &msg),
        Err(e) => refused(e, Some(&s)),
    }
}

async fn progress_fragment(State(app): Shared, h: HeaderMap) -> Response {
    if let Err(r) = viewer(&app, &h) {
        return *r;
    }
    (
        [(CACHE_CONTROL, "no-store")],
        Html(pages::progress_fragment(&app)),
    )
        .into_response()
}

async fn progress_json(State(app): Shared, h: HeaderMap) -> Response {
    if let Err(r) = viewer(&app, &h) {
        return *r;
    }
    ([(CACHE_CONTROL, "no-store")], Json(app.progress())).into_response()
}

async fn review_page(
    State(app): Shared,
    Path(sample): Path<String>,
    h: HeaderMap,
    Query(q): Query<Msg>,
) -> Response {
    let s = match viewer(&app, &h) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let a = Arc::clone(&app);
    let sm = sample.clone();
    match blocking(move || a.state(&sm)).await {
        Ok(st) => {
            let msg = q.msg;
            Html(pages::review(
                &sample,
                &st,
                app.counting(&sample),
                s.as_ref(),
                msg.as_deref(),
            ))
            .into_response()
        }
        Err(e) => refused(e, s.as_ref()),
    }
}

async fn sample_action(
    State(app): Shared,
    Path((sample, action)): Path<(String, String)>,
    h: HeaderMap,
    form: FormResult,
) -> Response {
    let (s, f) = match actor(&app, &h, form) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let a = Arc::clone(&app);
    let by = s.user.clone();
    let sm = sample.clone();
    let to = format!("/counts/{sample}");
    let done = async {
        match action.as_str() {
            "review" => {
                let frame: u64 = f.number("frame")?;
                let index: u32 = f.number("index")?;
                let verdict = f.need("verdict")?.to_string();
                let v = verdict.clone();
                blocking(move || a.review(&sm, frame, index, &v, &by)).await?;
                Ok((
                    format!("{to}#c-{frame}-{index}"),
                    format!("cell {index} of frame {frame}: {verdict}"),
                ))
            }
            "sign" => {
                blocking(move || a.sign(&sm, &by)).await?;
                Ok((
                    to.clone(),
                    format!("signed by {}: the report is locked", s.user),
                ))
            }
            "amend" => {
                let reason = f.need("reason")?.to_string();
                blocking(move || a.amend(&sm, &by, &reason)).await?;
                Ok((
                    to.clone(),
                    "amended: review the cells and sign again".to_string(),
                ))
            }
            other => Err(Refusal::not_found(format!(
                "no action {other:?} on a count"
            ))),
        }
    };
    match done.await {
        Ok((to, msg)) => back(&to, &msg),
        Err(e) => refused(e, Some(&s)),
    }
}

async fn crop(
    State(app): Shared,
    Path((sample, frame, index)): Path<(String, String, String)>,
    h: HeaderMap,
) -> Response {
    let s = match viewer(&app, &h) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let got = blocking(move || {
        let none = || {
            Refusal::not_found(format!(
                "sample {sample} has no cell {index} in frame {frame}"
            ))
        };
        let (fr, ix) = (frame.parse::<u64>(), index.parse::<u32>());
        let (Ok(fr), Ok(ix)) = (fr, ix) else {
            return Err(none());
        };
        let st = app.state(&sample)?;
        let cell = st.cell(fr, ix).ok_or_else(none)?;
        let crop = cell
            .crop
            .as_ref()
            .ok_or_else(|| Refusal::not_found(format!("cell {ix} of frame {fr} has no crop")))?;
        crop.to_png()
            .map_err(|e| Refusal::failed(format!("cannot encode the crop: {e}")))
    })
    .await;
    match got {
        Ok(png) => (
            [
                (CONTENT_TYPE, "image/png"),
                (CACHE_CONTROL, "private, max-age=3600"),
            ],
            png,
        )
            .into_response(),
        Err(e) => refused(e, s.as_ref()),
    }
}

async fn report_file(
    State(app): Shared,
    Path((sample, format)): Path<(String, String)>,
    h: HeaderMap,
) -> Response {
    let s = match viewer(&app, &h) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let a = Arc::clone(&app);
    let sm = sample.clone();
    let got = blocking(move || {
        let st = a.state(&sm)?;
        let r = Report::from_journal(&st);
        let signed = st
            .signed()
            .map(|x| (x.by.clone(), report::iso_date(x.unix)));
        let status = super::app::status_of(&st);
        Ok(match format.as_str() {
            "html" => {
                let html =
                    report::html::to_string(&r).map_err(|e| Refusal::failed(e.to_string()))?;
                let banner = format!(
                    "<h1>White-cell differential</h1>\n<p>Sample <b>{}</b> · {}{}</p>\n",
                    report::html::escape(&sm),
                    report::html::escape(&status),
                    signed
                        .as_ref()
                        .map_or(String::new(), |(_, d)| format!(" on {d}"))
                );
                (
                    "text/html; charset=utf-8",
                    "html",
                    html.replacen("<h1>White-cell differential</h1>\n", &banner, 1),
                )
            }
            "csv" => ("text/csv; charset=utf-8", "csv", report::csv::to_string(&r)),
            "json" => {
                let mut v = report::json::to_value(&r);
                v["sample"] = serde_json::json!(sm);
                v["status"] = serde_json::json!(status);
                v["signed"] = signed.map_or(
                    serde_json::Value::Null,
                    |(by, date)| serde_json::json!({"by": by, "date": date}),
                );
                (
                    "application/json",
                    "json",
                    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n",
                )
            }
            "fhir" => (
                "application/fhir+json",
                "fhir.json",
                report::fhir::to_string(&r, &st, &sm),
            ),
            other => {
                return Err(Refusal::not_found(format!(
                    "no report format {other:?}: html, csv, json or fhir"
                )))
            }
        })
    })
    .await;
    match got {
        Ok((mime, ext, body)) => {
            let disposition = format!("inline; filename=\"{sample}.{ext}\"");
            let mut r = ([(CONTENT_TYPE, mime)], body).into_response();
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                r.headers_mut().insert(CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e) => refused(e, s.as_ref()),
    }
}

async fn calibrate_page(State(app): Shared, h: HeaderMap, Query(q): Query<Msg>) -> Response {
    let s = match viewer(&app, &h) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let msg = q.msg;
    Html(pages::calibrate(&app, s.as_ref(), msg.as_deref())).into_response()
}

async fn calibrate(State(app): Shared, h: HeaderMap, form: FormResult) -> Response {
    let (s, f) = match actor(&app, &h, form) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let samples = f.all("sample");
    let a = Arc::clone(&app);
    match blocking(move || a.export_calibration(&samples)).await {
        Ok((id, per_class)) => {
            Html(pages::exported(&app, Some(&s), &id, &per_class)).into_response()
        }
        Err(e) => refused(e, Some(&s)),
    }
}

async fn calibrate_tar(State(app): Shared, Path(file): Path<String>, h: HeaderMap) -> Response {
    let s = match viewer(&app, &h) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let id = file.strip_suffix(".tar").unwrap_or("").to_string();
    let a = Arc::clone(&app);
    match blocking(move || a.calibration_tar(&id)).await {
        Ok(tar) => (
            [
                (CONTENT_TYPE, "application/x-tar".to_string()),
                (
                    CONTENT_DISPOSITION,
                    format!("attachment; filename=\"cells-{}\"", file.replace('"', "")),
                ),
            ],
            tar,
        )
            .into_response(),
        Err(e) => refused(e, s.as_ref()),
    }
}
