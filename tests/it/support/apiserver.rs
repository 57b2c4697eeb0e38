//! An in-process Kubernetes API server double, spoken to by the real `kube`
//! client over real HTTP (plain HTTP on 127.0.0.1).
//!
//! It is a generic JSON object store with the API server's protocol on top:
//! resource paths (`/api/v1/...`, `/apis/<group>/<version>/...`), a global
//! `resourceVersion` counter, list (selectors, `limit`/`continue`,
//! `resourceVersion`/`resourceVersionMatch`), watch (chunked JSON lines,
//! bookmarks, `sendInitialEvents`, 410 `Expired` after compaction,
//! `timeoutSeconds`), create/get/replace/patch/delete with Kubernetes'
//! `Status` error bodies, the `status` subresource, finalizers, and
//! CustomResourceDefinitions that make their kinds served while they exist.
//!
//! What it does not model is listed in [`ApiServerDouble`]'s documentation.
//!
//! Test hooks: [`ApiServerDouble::fail_next`], [`ApiServerDouble::compact`],
//! [`ApiServerDouble::restart`], [`ApiServerDouble::objects`],
//! [`ApiServerDouble::requests`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as AxState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

mod schema;

/// `(field, message)` of each `details.causes` entry of a refusal.
pub fn causes(status: &Value) -> Vec<(String, String)> {
    status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The CRD group and plural.
pub const CRD_GROUP: &str = "apiextensions.k8s.io";
pub const CRD_PLURAL: &str = "customresourcedefinitions";

/// Tunables of the double.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often a watch that asked for bookmarks (`allowWatchBookmarks=true`)
    /// gets a BOOKMARK event. A real API server sends them about once a minute.
    pub bookmark_interval: Duration,
    /// How many change events are retained for watches to resume from; a
    /// watch (or an `Exact` list) from a resourceVersion older than the
    /// retained window gets 410 Expired.
    pub retained_events: usize,
    /// How long after its creation a CRD becomes Established (and its kind
    /// served). Zero: at once, in the create itself.
    pub crd_establish_delay: Duration,
    /// How long [`ApiServerDouble::restart`] refuses connections.
    pub restart_downtime: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(1),
            retained_events: 10_000,
            crd_establish_delay: Duration::ZERO,
            restart_downtime: Duration::from_millis(300),
        }
    }
}

/// One request the double received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw (still percent-encoded) query string.
    pub query: String,
    /// The decoded query parameters.
    pub params: Vec<(String, String)>,
    /// The media type of the body, without parameters.
    pub content_type: Option<String>,
}

impl RecordedRequest {
    /// The decoded value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is a watch request.
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }
}

/// A Kubernetes API server double. Dropping it stops the server.
///
/// # Modelled
/// - Resources keyed by (group, plural) with kind, listKind, scope; built in:
///   core/v1 `namespaces` (cluster), `configmaps`, `secrets`, `events`;
///   `coordination.k8s.io/v1` `leases`; `apps/v1` `statefulsets`; `discovery.k8s.io/v1`
///   `endpointslices`; `events.k8s.io/v1` `events` (what
///   `kube::runtime::events::Recorder` writes); `apiextensions.k8s.io/v1`
///   `customresourcedefinitions` (cluster, status subresource). A CRD makes
///   its kind served (all `served` versions, same stored JSON for each: no
///   conversion) once Established; deleting it deletes its objects (DELETED
///   events) and ends open watches of the kind.
/// - Server-set metadata: `uid`, `creationTimestamp`, `resourceVersion`
///   (one global counter), `generation` for CRDs and custom resources only
///   (like the real server: ConfigMaps, Secrets, Leases have none), bumped
///   when anything outside `metadata` (and outside `status` when the status
///   subresource is on) changes. Client-sent values of these are ignored.
/// - An update that changes nothing is a no-op: no new resourceVersion, no
///   event (like the real server).
/// - Optimistic concurrency: a non-empty `metadata.resourceVersion` in a PUT or
///   PATCH body must match (409 Conflict otherwise); an empty one updates
///   unconditionally. Delete preconditions (uid, resourceVersion) too.
/// - Status subresource: `.../status` writes change only `status`; main
///   resource writes keep the stored `status`; create drops `status`.
/// - Finalizers: delete sets `deletionTimestamp`; the object goes when its last
///   finalizer is removed; no new finalizers on a deleting object.
/// - Secrets: `stringData` is folded into base64 `data`; `type` defaults to
///   `Opaque`.
/// - Patch: `application/merge-patch+json` (RFC 7386),
///   `application/json-patch+json` (RFC 6902),
///   `application/strategic-merge-patch+json` for built-in kinds (415 for
///   custom resources, like the real server), `application/apply-patch+yaml`.
/// - List: equality- and set-based label selectors, field selectors on
///   `metadata.name`/`metadata.namespace` (and `type` for Secrets),
///   `limit`/`continue` served from a consistent snapshot (continue tokens
///   expire with `compact()`), `resourceVersion` with `resourceVersionMatch`
///   `NotOlderThan` (504 if in the future) and `Exact` (the state at that
///   version is rebuilt from the retained events; 410 if compacted away).
///   Items of built-in kinds carry no apiVersion/kind (like the real server).
/// - Watch: ADDED/MODIFIED/DELETED filtered by namespace and selectors (an
///   object leaving a selector is DELETED, entering it ADDED), initial ADDED
///   events when `resourceVersion` is unset or "0" or `sendInitialEvents=true`
///   (then a BOOKMARK annotated `k8s.io/initial-events-end`), periodic
///   BOOKMARKs, `timeoutSeconds`, an ERROR 410 Expired event for a
///   resourceVersion older than the retained window.
/// - Custom resources are checked against their CRD's `openAPIV3Schema` for
///   the version written, as apiextensions-apiserver does: unknown fields
///   pruned (`fieldValidation=Strict`: refused, 400), `default`s applied,
///   OpenAPI validation (type, nullable, required, enum, pattern, min/max
///   length, items, bounds), then the `x-kubernetes-validations` CEL rules
///   (`oldSelf` rules on updates only), skipped with Kubernetes' extra cause
///   when the OpenAPI check found a blocking error; 422 `Invalid` with one
///   `details.causes` entry per error, in Kubernetes' wording (`Required
///   value`, `Unsupported value: ...`, `Invalid value: "object": <rule
///   message>`). Writes to `status` check only `status`.
/// - `dryRun=All` on writes: the result is computed and returned, not stored.
/// - Errors as Kubernetes `Status` objects with Kubernetes' reasons and
///   messages; `GET /version`.
///
/// # Not modelled
/// - Server-side apply field management: an apply patch is a JSON merge patch
///   of the given fields; no `managedFields` (any sent are dropped), no field
///   ownership, no apply conflicts (`force` is ignored), lists are replaced,
///   fields left out of an apply are not removed.
/// - Strategic merge patch semantics (patch-merge keys): treated as a merge
///   patch, so lists are replaced.
/// - Of CRD schemas (see `apiserver/schema.rs` for the detail): `format`,
///   `allOf`/`anyOf`/`oneOf`/`not`, list types (set/map uniqueness, map-keyed
///   `oldSelf` of list items), `messageExpression`, the CEL cost budget,
///   Kubernetes' CEL libraries other than `isURL`, validation ratcheting
///   (an update is checked whole, unchanged invalid fields included), and
///   `fieldValidation=Warn` warnings (unknown fields are pruned silently).
///   A CRD's schema itself is not checked for being structural.
/// - CRD conversion webhooks, CRD name conflicts, built-in types' own
///   validation (e.g. Lease or Event fields).
/// - Admission (mutating/validating webhooks, policies), authentication and
///   RBAC (every request is allowed; tokens are not checked), impersonation.
/// - Garbage collection: `ownerReferences` and `propagationPolicy` are
///   ignored; namespaces have no Terminating lifecycle and deleting one
///   deletes nothing else; namespaced objects do not need their namespace.
///   A CRD is removed at once (no `customresourcecleanup` finalizer).
/// - Immutable ConfigMaps/Secrets, graceful deletion periods, `generateName`
///   retries, `metadata.selfLink`, protobuf, CBOR, table output,
///   `resourceVersionMatch` validation rules, API discovery (`/api`, `/apis`),
///   aggregated APIs, subresources other than `status`, the deprecated
///   `/watch/` paths, watch of a single object by path, HTTP/2-specific
///   behaviour, TLS.
pub struct ApiServerDouble {
    inner: Arc<Inner>,
    addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl ApiServerDouble {
    /// A raw HTTP exchange with the double: the status code and the JSON
    /// body (a JSON string when the body is not JSON).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .request(
                method.parse().expect("an HTTP method"),
                format!("{}{path}", self.url()),
            )
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("the double answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("a readable body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Starts a double with default [`Options`] on 127.0.0.1, a free port.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts a double with `opts`.
    pub async fn start_with(opts: Options) -> Self {
        let inner = Arc::new(Inner::new(opts));
        let listener =
            bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind the API server double");
        let addr = listener.local_addr().expect("local address");
        let server = tokio::spawn(serve(listener, router(&inner)));
        Self {
            inner,
            addr,
            server: Mutex::new(Some(server)),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig for this server to `dir/kubeconfig` (plain HTTP,
    /// a dummy bearer token, namespace `default`) and returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {url}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: double\n    namespace: default\ncurrent-context: double\nusers:\n- name: double\n  user:\n    token: double-token\npreferences: {{}}\n",
            url = self.url()
        );
        std::fs::write(&path, yaml).expect("write kubeconfig");
        path
    }

    /// The next `n` requests whose method is `method` (or any, for `"*"`) and
    /// whose path starts with `path_prefix` answer `status` with a Kubernetes
    /// `Status` body (reason from the code: 409 Conflict, 500 InternalError,
    /// 429 TooManyRequests with `Retry-After: 1`, 503 ServiceUnavailable, ...).
    /// Watch requests are GETs too. Note: the `kube` client retries 429, 503
    /// and 504 by itself (see `kube::client::retry`).
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, n: usize) {
        self.inner.lock().failures.push(FailureRule {
            method: method.to_ascii_uppercase(),
            prefix: path_prefix.to_string(),
            status,
            remaining: n,
        });
    }

    /// Drops all retained events (and continue tokens): a watch or an `Exact`
    /// list from any resourceVersion older than the current one gets 410.
    pub fn compact(&self) {
        let mut st = self.inner.lock();
        st.events.clear();
        st.compacted_through = st.rv;
        st.continues.clear();
    }

    /// Like an API server restart: drops every open connection (so every
    /// watch), refuses connections for `restart_downtime`, then serves again
    /// on the same port. The store and the retained events are kept.
    pub async fn restart(&self) {
        let old = self.server.lock().expect("server lock").take();
        if let Some(old) = old {
            old.abort();
            // `abort` cancels the accept loop; its JoinSet of connections is
            // dropped with it, which aborts every connection.
            let _aborted = old.await;
        }
        tokio::time::sleep(self.inner.opts.restart_downtime).await;
        let listener = bind(self.addr).expect("rebind the API server double");
        let server = tokio::spawn(serve(listener, router(&self.inner)));
        *self.server.lock().expect("server lock") = Some(server);
    }

    /// The stored objects of (group, plural), as stored (with apiVersion/kind).
    pub fn objects(&self, group: &str, plural: &str) -> Vec<Value> {
        let st = self.inner.lock();
        st.objects
            .get(&(group.to_string(), plural.to_string()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One stored object.
    pub fn object(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let st = self.inner.lock();
        st.objects
            .get(&(group.to_string(), plural.to_string()))
            .and_then(|m| m.get(&(namespace.unwrap_or("").to_string(), name.to_string())))
            .cloned()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.inner.lock().requests.clear();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.lock().rv
    }

    /// Watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.inner.open_watches.load(Ordering::SeqCst)
    }

    /// Whether (group, plural) is served now (built in, or its CRD is Established).
    pub fn is_served(&self, group: &str, plural: &str) -> bool {
        self.inner
            .lock()
            .types
            .contains_key(&(group.to_string(), plural.to_string()))
    }
}

impl Drop for ApiServerDouble {
    fn drop(&mut self) {
        if let Ok(mut server) = self.server.lock()
            && let Some(server) = server.take()
        {
            server.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// Serving

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn router(inner: &Arc<Inner>) -> Router {
    Router::new().fallback(handle).with_state(inner.clone())
}

/// The accept loop. Connections live in a JoinSet owned by this task, so
/// aborting the task closes every connection.
async fn serve(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let _served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_done) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(AxState(inner): AxState<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let params: Vec<(String, String)> = Query::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let injected = {
        let mut st = inner.lock();
        st.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path: path.clone(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            params: params.clone(),
            content_type: content_type.clone(),
        });
        take_failure(&mut st, parts.method.as_str(), &path)
    };
    if let Some(err) = injected {
        return err.into_response();
    }
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("reading the request body: {e}")).into_response();
        }
    };
    let query: HashMap<String, String> = params.into_iter().collect();
    let req = Req {
        method: parts.method,
        path,
        query,
        content_type,
        body,
    };
    match inner.route(&req) {
        Ok(resp) => resp,
        Err(err) => err.into_response(),
    }
}

/// A write's options: the version it was made through, `dryRun=All`, and
/// `fieldValidation=Strict` (unknown fields refused instead of pruned).
struct Write<'a> {
    version: &'a str,
    dry_run: bool,
    strict: bool,
}

struct Req {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    content_type: Option<String>,
    body: Bytes,
}

impl Req {
    fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// What a write needs of its request besides the body.
    fn write<'a>(&self, version: &'a str) -> Write<'a> {
        Write {
            version,
            dry_run: self.dry_run(),
            strict: self.q("fieldValidation") == Some("Strict"),
        }
    }

    fn dry_run(&self) -> bool {
        self.q("dryRun").is_some_and(|v| v == "All")
    }
}

struct FailureRule {
    method: String,
    prefix: String,
    status: u16,
    remaining: usize,
}

fn take_failure(st: &mut State, method: &str, path: &str) -> Option<ApiError> {
    let rule = st.failures.iter_mut().find(|r| {
        r.remaining > 0 && (r.method == "*" || r.method == method) && path.starts_with(&r.prefix)
    })?;
    rule.remaining -= 1;
    let status = rule.status;
    st.failures.retain(|r| r.remaining > 0);
    Some(injected_error(st, status, path))
}

fn injected_error(st: &State, status: u16, path: &str) -> ApiError {
    // For a 409 on an object path, answer exactly like a stale-write conflict.
    let target = parse_path(path).and_then(|p| {
        let rt = st.types.get(&(p.group.clone(), p.plural.clone()))?.clone();
        Some((rt, p.name?))
    });
    match status {
        409 => match target {
            Some((rt, name)) => ApiError::conflict(&rt, &name, MODIFIED),
            None => ApiError::new(
                409,
                "Conflict",
                "Operation cannot be fulfilled: injected conflict",
            ),
        },
        404 => match target {
            Some((rt, name)) => ApiError::not_found(&rt, &name),
            None => ApiError::no_such_resource(),
        },
        400 => ApiError::bad_request("injected bad request"),
        401 => ApiError::new(401, "Unauthorized", "Unauthorized"),
        403 => ApiError::new(403, "Forbidden", "injected: forbidden"),
        410 => ApiError::new(410, "Expired", "injected: too old resource version"),
        429 => {
            let mut e = ApiError::new(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            );
            e.details = Some(json!({"retryAfterSeconds": 1}));
            e.retry_after = Some(1);
            e
        }
        500 => ApiError::internal("injected failure"),
        503 => ApiError::new(
            503,
            "ServiceUnavailable",
            "injected: the server is currently unable to handle the request",
        ),
        504 => ApiError::new(
            504,
            "Timeout",
            "injected: the server was unable to return a response in the time allotted",
        ),
        code => ApiError::new(code, "", format!("injected failure {code}")),
    }
}

// ---------------------------------------------------------------------------
// Errors: Kubernetes `Status` objects

const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";
const PATCH_TYPES: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

#[derive(Debug)]
struct ApiError {
    code: u16,
    reason: String,
    message: String,
    details: Option<Value>,
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn internal(message: &str) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
        .with_details(json!({"causes": [{"message": message}]}))
    }

    /// The answer for a path that names no served resource.
    fn no_such_resource() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        )
        .with_details(rt.details(name))
    }

    fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        )
        .with_details(rt.details(name))
    }

    fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                rt.qualified()
            ),
        )
        .with_details(rt.details(name))
    }

    fn expired(message: String) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 422 with one field cause, like apimachinery's `NewInvalid`.
    fn invalid(rt: &ResourceType, name: &str, field: &str, cause: &str) -> Self {
        let group_kind = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        let mut details = json!({"name": name, "kind": rt.kind, "causes": [
            {"reason": "FieldValueInvalid", "message": cause, "field": field}
        ]});
        if !rt.group.is_empty() {
            details["group"] = json!(rt.group);
        }
        Self::new(
            422,
            "Invalid",
            format!("{group_kind} \"{name}\" is invalid: {field}: {cause}"),
        )
        .with_details(details)
    }

    /// 422 with every cause of a schema or CEL check, like
    /// apiextensions-apiserver's aggregated `NewInvalid`.
    fn invalid_causes(rt: &ResourceType, name: &str, causes: &[schema::Cause]) -> Self {
        let group_kind = format!("{}.{}", rt.kind, rt.group);
        let lines: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = match lines.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{group_kind} \"{name}\" is invalid: {summary}"),
        )
        .with_details(json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}))
    }

    fn status_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty()
            && let Some(m) = v.as_object_mut()
        {
            m.remove("reason");
        }
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }

    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = json_response(code, &self.status_json());
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

// ---------------------------------------------------------------------------
// The store

/// (group, plural)
type Key = (String, String);
/// (namespace or "", name)
type ObjKey = (String, String);

#[derive(Clone, Debug)]
struct ResourceType {
    group: String,
    plural: String,
    kind: String,
    list_kind: String,
    namespaced: bool,
    versions: Vec<String>,
    status_subresource: bool,
    /// CRDs and custom resources have `metadata.generation`; ConfigMaps etc. don't.
    tracks_generation: bool,
    /// Built-in: list items carry no apiVersion/kind; strategic merge patch accepted.
    builtin: bool,
    /// DELETE answers the deleted object (else a `Status` Success).
    returns_deleted_object: bool,
    /// The uid of the CRD that serves this kind.
    crd_uid: Option<String>,
    /// Custom resources: each served version's `openAPIV3Schema`.
    schemas: BTreeMap<String, Value>,
}

impl ResourceType {
    fn builtin(group: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            list_kind: format!("{kind}List"),
            namespaced,
            versions: vec!["v1".to_string()],
            status_subresource: false,
            tracks_generation: false,
            builtin: true,
            returns_deleted_object: false,
            crd_uid: None,
            schemas: BTreeMap::new(),
        }
    }

    fn key(&self) -> Key {
        (self.group.clone(), self.plural.clone())
    }

    fn is_crd(&self) -> bool {
        self.group == CRD_GROUP && self.plural == CRD_PLURAL
    }

    fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// `configmaps` or `widgets.example.com`, as in Kubernetes' messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self, name: &str) -> Value {
        let mut d = json!({"name": name, "kind": self.plural});
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

fn builtin_types() -> Vec<ResourceType> {
    let mut namespaces = ResourceType::builtin("", "namespaces", "Namespace", false);
    namespaces.status_subresource = true;
    namespaces.returns_deleted_object = true;
    let mut crds = ResourceType::builtin(CRD_GROUP, CRD_PLURAL, "CustomResourceDefinition", false);
    crds.status_subresource = true;
    crds.tracks_generation = true;
    crds.returns_deleted_object = true;
    vec![
        namespaces,
        ResourceType::builtin("", "configmaps", "ConfigMap", true),
        ResourceType::builtin("", "secrets", "Secret", true),
        ResourceType::builtin("coordination.k8s.io", "leases", "Lease", true),
        ResourceType::builtin("discovery.k8s.io", "endpointslices", "EndpointSlice", true),
        ResourceType::builtin("apps", "statefulsets", "StatefulSet", true),
        ResourceType::builtin("", "events", "Event", true),
        ResourceType::builtin("events.k8s.io", "events", "Event", true),
        crds,
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

struct StoredEvent {
    rv: u64,
    key: Key,
    ns: String,
    etype: EventType,
    /// The object after the change (for DELETED: the last state, with the
    /// deletion's resourceVersion).
    object: Value,
    /// The stored object before the change.
    old: Option<Value>,
}

struct ContinueSnapshot {
    key: Key,
    rv: u64,
    remaining: Vec<Value>,
}

struct State {
    rv: u64,
    types: HashMap<Key, ResourceType>,
    objects: HashMap<Key, BTreeMap<ObjKey, Value>>,
    events: VecDeque<StoredEvent>,
    /// A watch from resourceVersion N is served iff N >= this.
    compacted_through: u64,
    continues: HashMap<String, ContinueSnapshot>,
    failures: Vec<FailureRule>,
    requests: Vec<RecordedRequest>,
}

struct Inner {
    opts: Options,
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    open_watches: AtomicUsize,
}

/// The first resourceVersion handed out is this plus one.
const INITIAL_RV: u64 = 1000;

impl Inner {
    fn new(opts: Options) -> Self {
        let types = builtin_types().into_iter().map(|t| (t.key(), t)).collect();
        Self {
            opts,
            state: Mutex::new(State {
                rv: INITIAL_RV,
                types,
                objects: HashMap::new(),
                events: VecDeque::new(),
                compacted_through: INITIAL_RV,
                continues: HashMap::new(),
                failures: Vec::new(),
                requests: Vec::new(),
            }),
            changes: watch::channel(INITIAL_RV).0,
            open_watches: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge the double for the others.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores a change: bumps the global resourceVersion, stamps it on the
    /// object, records the event and wakes the watches.
    fn commit(
        &self,
        st: &mut State,
        rt: &ResourceType,
        etype: EventType,
        mut obj: Value,
        old: Option<Value>,
    ) -> Value {
        st.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(st.rv.to_string()));
        let ns = meta_str(&obj, "namespace").unwrap_or_default().to_string();
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let store = st.objects.entry(rt.key()).or_default();
        if etype == EventType::Deleted {
            store.remove(&(ns.clone(), name));
        } else {
            store.insert((ns.clone(), name), obj.clone());
        }
        let rv = st.rv;
        st.events.push_back(StoredEvent {
            rv,
            key: rt.key(),
            ns,
            etype,
            object: obj.clone(),
            old,
        });
        while st.events.len() > self.opts.retained_events {
            if let Some(dropped) = st.events.pop_front() {
                st.compacted_through = dropped.rv;
            }
        }
        if self.opts.retained_events == 0 {
            st.compacted_through = st.rv;
        }
        self.changes.send_replace(st.rv);
        obj
    }

    // -- routing ------------------------------------------------------------

    fn route(self: &Arc<Self>, req: &Req) -> Result<Response, ApiError> {
        if req.path == "/version" && req.method == Method::GET {
            return Ok(json_response(
                StatusCode::OK,
                &json!({
                    "major": "1", "minor": "34", "gitVersion": "v1.34.0-seedgate-double",
                    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                    "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
                    "platform": "linux/amd64"
                }),
            ));
        }
        let Some(p) = parse_path(&req.path) else {
            return Err(ApiError::no_such_resource());
        };
        let rt = {
            let st = self.lock();
            st.types.get(&(p.group.clone(), p.plural.clone())).cloned()
        };
        let Some(rt) = rt else {
            return Err(ApiError::no_such_resource());
        };
        let scope_ok = match (rt.namespaced, p.namespace.is_some()) {
            (true, true) | (false, false) => true,
            // The all-namespaces collection of a namespaced kind.
            (true, false) => p.name.is_none(),
            (false, true) => false,
        };
        if !rt.versions.contains(&p.version) || !scope_ok {
            return Err(ApiError::no_such_resource());
        }
        let ns = p.namespace.as_deref();
        let all_namespaces = rt.namespaced && ns.is_none();
        match (&p.name, &p.subresource) {
            (None, _) => match req.method {
                Method::GET if matches!(req.q("watch"), Some("true" | "1")) => {
                    self.watch(&rt, &p.version, ns, req)
                }
                Method::GET => self.list(&rt, &p.version, ns, req),
                Method::POST if !all_namespaces => self.create(&rt, &p.version, ns, req),
                Method::DELETE if !all_namespaces => {
                    self.delete_collection(&rt, &p.version, ns, req)
                }
                _ => Err(ApiError::method_not_allowed()),
            },
            (Some(name), None) => match req.method {
                Method::GET => self.get(&rt, &p.version, ns, name),
                Method::PUT => self.replace(&rt, &p.version, ns, name, req, false),
                Method::PATCH => self.patch(&rt, &p.version, ns, name, req, false),
                Method::DELETE => self.delete(&rt, &p.version, ns, name, req),
                _ => Err(ApiError::method_not_allowed()),
            },
            (Some(name), Some(sub)) if sub == "status" && rt.status_subresource => match req.method
            {
                Method::GET => self.get(&rt, &p.version, ns, name),
                Method::PUT => self.replace(&rt, &p.version, ns, name, req, true),
                Method::PATCH => self.patch(&rt, &p.version, ns, name, req, true),
                _ => Err(ApiError::method_not_allowed()),
            },
            (Some(_), Some(_)) => Err(ApiError::no_such_resource()),
        }
    }

    // -- reads --------------------------------------------------------------

    fn get(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Response, ApiError> {
        let st = self.lock();
        let obj = stored(&st, rt, ns, name).ok_or_else(|| ApiError::not_found(rt, name))?;
        Ok(json_response(
            StatusCode::OK,
            &present(rt, version, obj.clone()),
        ))
    }

    fn list(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        req: &Req,
    ) -> Result<Response, ApiError> {
        let selectors = Selectors::parse(rt, req)?;
        let limit = req
            .q("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let mut st = self.lock();
        if let Some(token) = req.q("continue").filter(|t| !t.is_empty()) {
            let snap = st.continues.remove(token).filter(|s| s.key == rt.key()).ok_or_else(|| {
                ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".to_string(),
                )
            })?;
            return Ok(list_page(
                &mut st,
                rt,
                version,
                snap.rv,
                snap.remaining,
                limit,
            ));
        }
        let rv_param = req.q("resourceVersion").filter(|v| !v.is_empty());
        let rv_match = req.q("resourceVersionMatch").filter(|v| !v.is_empty());
        let (at, objects) = match (rv_param, rv_match) {
            (None, Some(_)) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            (Some(rv), Some("Exact")) => {
                let rv = parse_rv(rv)?;
                if rv > st.rv {
                    return Err(too_large_rv(rv, st.rv));
                }
                if rv < st.compacted_through {
                    return Err(ApiError::expired(
                        "The resourceVersion for the provided list is too old.".to_string(),
                    ));
                }
                (rv, state_at(&st, &rt.key(), rv))
            }
            (Some(_), Some(m)) if m != "NotOlderThan" => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
            (Some(rv), _) => {
                let rv = parse_rv(rv)?;
                if rv > st.rv {
                    return Err(too_large_rv(rv, st.rv));
                }
                (
                    st.rv,
                    st.objects.get(&rt.key()).cloned().unwrap_or_default(),
                )
            }
            (None, None) => (
                st.rv,
                st.objects.get(&rt.key()).cloned().unwrap_or_default(),
            ),
        };
        let items: Vec<Value> = objects
            .into_iter()
            .filter(|((obj_ns, _), obj)| ns.is_none_or(|ns| ns == obj_ns) && selectors.matches(obj))
            .map(|(_, obj)| obj)
            .collect();
        Ok(list_page(&mut st, rt, version, at, items, limit))
    }

    fn watch(
        self: &Arc<Self>,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        req: &Req,
    ) -> Result<Response, ApiError> {
        let selectors = Selectors::parse(rt, req)?;
        let bookmarks = req.q("allowWatchBookmarks").is_some_and(|v| v == "true");
        let send_initial = req.q("sendInitialEvents").map(|v| v == "true");
        let timeout = req
            .q("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|t| *t > 0)
            .map(Duration::from_secs);
        let rv_param = req.q("resourceVersion").filter(|v| !v.is_empty());
        let spec = WatchSpec {
            rt: rt.clone(),
            version: version.to_string(),
            ns: ns.map(str::to_string),
            selectors,
            bookmarks,
        };
        let mut initial = Vec::new();
        let (start, expired) = {
            let st = self.lock();
            let initial_events = send_initial.unwrap_or(matches!(rv_param, None | Some("0")));
            if initial_events {
                if let Some(objects) = st.objects.get(&rt.key()) {
                    for ((obj_ns, _), obj) in objects {
                        if ns.is_none_or(|ns| ns == obj_ns) && spec.selectors.matches(obj) {
                            initial.push(event_line("ADDED", &present(rt, version, obj.clone())));
                        }
                    }
                }
                if send_initial == Some(true) && bookmarks {
                    initial.push(spec.bookmark(st.rv, true));
                }
                (st.rv, false)
            } else {
                let rv = rv_param.map_or(Ok(st.rv), parse_rv)?;
                if rv < st.compacted_through {
                    initial.push(expired_line(rv, st.compacted_through));
                    (rv, true)
                } else {
                    (rv, false)
                }
            }
        };
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        tokio::spawn(run_watch(
            self.clone(),
            spec,
            tx,
            initial,
            start,
            expired,
            timeout,
        ));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|line| (Ok::<Bytes, Infallible>(line), rx))
        });
        let mut resp = Response::new(Body::from_stream(stream));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(resp)
    }

    // -- writes -------------------------------------------------------------

    fn create(
        self: &Arc<Self>,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        req: &Req,
    ) -> Result<Response, ApiError> {
        let mut obj = parse_object(&req.body)?;
        check_type_meta(&mut obj, rt, version)?;
        let mut st = self.lock();
        let created = self.create_locked(&mut st, rt, ns, obj, &req.write(version))?;
        Ok(json_response(
            StatusCode::CREATED,
            &present(rt, version, created),
        ))
    }

    fn create_locked(
        self: &Arc<Self>,
        st: &mut State,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        write: &Write<'_>,
    ) -> Result<Value, ApiError> {
        let dry_run = write.dry_run;
        let meta = meta_mut(&mut obj);
        match (
            ns,
            meta.get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty()),
        ) {
            (Some(path_ns), Some(obj_ns)) if path_ns != obj_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (Some(path_ns), _) => {
                meta.insert("namespace".into(), json!(path_ns));
            }
            (None, _) => {
                meta.remove("namespace");
            }
        }
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            // A plain storage error in the real server: 500, no reason.
            return Err(ApiError::new(
                500,
                "",
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = match meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(name) => name.to_string(),
            None => match meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                Some(prefix) => {
                    let name = format!("{prefix}{}", random_suffix());
                    meta.insert("name".into(), json!(name));
                    name
                }
                None => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            },
        };
        validate_name(rt, &name)?;
        if stored(st, rt, ns, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        for server_field in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
            "generation",
        ] {
            meta.remove(server_field);
        }
        if rt.tracks_generation {
            meta.insert("generation".into(), json!(1));
        }
        prune_metadata(&mut obj);
        if rt.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        admit(rt, write, &name, &mut obj, None)?;
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "secrets") => normalize_secret(&mut obj),
            ("", "namespaces") => obj["status"] = json!({"phase": "Active"}),
            _ => {}
        }
        let crd_type = if rt.is_crd() {
            let t = crd_resource_type(&obj)
                .map_err(|cause| ApiError::invalid(rt, &name, "spec", &cause))?;
            default_crd_names(&mut obj);
            Some(t)
        } else {
            None
        };
        if dry_run {
            return Ok(obj);
        }
        let establish_now = self.opts.crd_establish_delay.is_zero();
        if crd_type.is_some() && establish_now {
            set_crd_established(&mut obj);
        }
        let created = self.commit(st, rt, EventType::Added, obj, None);
        if let Some(t) = crd_type {
            if establish_now {
                st.types.insert(t.key(), t);
            } else {
                let inner = self.clone();
                let uid = t.crd_uid.clone().unwrap_or_default();
                tokio::spawn(async move {
                    tokio::time::sleep(inner.opts.crd_establish_delay).await;
                    inner.establish_crd(&name, &uid);
                });
            }
        }
        Ok(created)
    }

    /// The (delayed) CRD establishing controller.
    fn establish_crd(&self, name: &str, uid: &str) {
        let crds = builtin_types()
            .into_iter()
            .find(ResourceType::is_crd)
            .expect("CRD type");
        let mut st = self.lock();
        let Some(old) = stored(&st, &crds, None, name).cloned() else {
            return;
        };
        if meta_str(&old, "uid") != Some(uid) {
            return;
        }
        let Ok(t) = crd_resource_type(&old) else {
            return;
        };
        let mut obj = old.clone();
        set_crd_established(&mut obj);
        self.commit(&mut st, &crds, EventType::Modified, obj, Some(old));
        st.types.insert(t.key(), t);
    }

    fn replace(
        self: &Arc<Self>,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        req: &Req,
        status_only: bool,
    ) -> Result<Response, ApiError> {
        let mut obj = parse_object(&req.body)?;
        check_type_meta(&mut obj, rt, version)?;
        let mut st = self.lock();
        let old = stored(&st, rt, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let updated =
            self.update_locked(&mut st, rt, old, obj, status_only, &req.write(version))?;
        Ok(json_response(
            StatusCode::OK,
            &present(rt, version, updated),
        ))
    }

    fn patch(
        self: &Arc<Self>,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        req: &Req,
        status_only: bool,
    ) -> Result<Response, ApiError> {
        let content_type = req.content_type.as_deref().unwrap_or_default();
        let patch = match content_type {
            "application/merge-patch+json" | "application/json-patch+json" => {
                serde_json::from_slice::<Value>(&req.body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            "application/strategic-merge-patch+json" if rt.builtin => {
                serde_json::from_slice::<Value>(&req.body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            "application/apply-patch+yaml" => parse_apply(&req.body)?,
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: {PATCH_TYPES}{}",
                        if other.is_empty() {
                            String::new()
                        } else {
                            format!(" (got {other})")
                        }
                    ),
                ));
            }
        };
        let apply = content_type == "application/apply-patch+yaml";
        if apply {
            check_apply_type_meta(&patch, rt, version)?;
        }
        let mut st = self.lock();
        let Some(old) = stored(&st, rt, ns, name).cloned() else {
            if apply && !status_only {
                // Server-side apply creates.
                let mut obj = patch;
                let meta = meta_mut(&mut obj);
                if meta
                    .get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    meta.insert("name".into(), json!(name));
                } else if meta.get("name").and_then(Value::as_str) != Some(name) {
                    return Err(name_mismatch(
                        meta_str(&obj, "name").unwrap_or_default(),
                        name,
                    ));
                }
                let created = self.create_locked(&mut st, rt, ns, obj, &req.write(version))?;
                return Ok(json_response(
                    StatusCode::CREATED,
                    &present(rt, version, created),
                ));
            }
            return Err(ApiError::not_found(rt, name));
        };
        let mut patched = old.clone();
        if content_type == "application/json-patch+json" {
            let ops: json_patch::Patch =
                serde_json::from_value(patch).map_err(|e| ApiError::bad_request(e.to_string()))?;
            json_patch::patch(&mut patched, &ops).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        } else {
            json_patch::merge(&mut patched, &patch);
        }
        if !patched.is_object() {
            return Err(ApiError::bad_request(
                "the patch does not result in an object",
            ));
        }
        let updated =
            self.update_locked(&mut st, rt, old, patched, status_only, &req.write(version))?;
        Ok(json_response(
            StatusCode::OK,
            &present(rt, version, updated),
        ))
    }

    /// The update path shared by PUT and PATCH (and their status variants).
    fn update_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        old: Value,
        new: Value,
        status_only: bool,
        write: &Write<'_>,
    ) -> Result<Value, ApiError> {
        let dry_run = write.dry_run;
        let name = meta_str(&old, "name").unwrap_or_default().to_string();
        let new_name = meta_str(&new, "name").unwrap_or_default();
        if new_name != name {
            return Err(name_mismatch(new_name, &name));
        }
        if let Some(new_ns) = meta_str(&new, "namespace").filter(|n| !n.is_empty())
            && Some(new_ns) != meta_str(&old, "namespace")
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let old_rv = meta_str(&old, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        if let Some(rv) = meta_str(&new, "resourceVersion").filter(|rv| !rv.is_empty())
            && rv != old_rv
        {
            return Err(ApiError::conflict(rt, &name, MODIFIED));
        }
        let mut result = if status_only {
            let mut r = old.clone();
            match new.get("status") {
                Some(status) => r["status"] = status.clone(),
                None => {
                    if let Some(m) = r.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            r
        } else {
            let mut r = new;
            let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
            let meta = meta_mut(&mut r);
            meta.remove("managedFields");
            meta.remove("selfLink");
            for server_field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
            ] {
                match old_meta.get(server_field) {
                    Some(v) => meta.insert(server_field.into(), v.clone()),
                    None => meta.remove(server_field),
                };
            }
            if rt.status_subresource {
                match old.get("status") {
                    Some(status) => r["status"] = status.clone(),
                    None => {
                        if let Some(m) = r.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            if rt.group.is_empty() && rt.plural == "secrets" {
                normalize_secret(&mut r);
            }
            r
        };
        meta_mut(&mut result).insert("resourceVersion".into(), json!(old_rv));
        prune_metadata(&mut result);
        if status_only {
            admit_status(rt, write, &name, &mut result, &old)?;
        } else {
            admit(rt, write, &name, &mut result, Some(&old))?;
        }
        let deleting = old["metadata"].get("deletionTimestamp").is_some();
        let finalizers = |v: &Value| -> Vec<String> {
            v["metadata"]["finalizers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        if deleting {
            let before = finalizers(&old);
            let added: Vec<String> = finalizers(&result)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    &name,
                    "metadata.finalizers",
                    &format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                ));
            }
        }
        if rt.is_crd() && !status_only {
            crd_resource_type(&result)
                .map_err(|cause| ApiError::invalid(rt, &name, "spec", &cause))?;
            if meta_str(&result, "name") != Some(name.as_str()) {
                return Err(ApiError::invalid(
                    rt,
                    &name,
                    "metadata.name",
                    "must be spec.names.plural+\".\"+spec.group",
                ));
            }
        }
        if rt.tracks_generation && !status_only && spec_of(rt, &old) != spec_of(rt, &result) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut result).insert("generation".into(), json!(generation));
        }
        if result == old {
            // No change: no write, no new resourceVersion, no event.
            return Ok(old);
        }
        if dry_run {
            return Ok(result);
        }
        if deleting && finalizers(&result).is_empty() {
            return Ok(self.remove_locked(st, rt, result, old));
        }
        let updated = self.commit(st, rt, EventType::Modified, result, Some(old));
        if rt.is_crd() && crd_is_established(&updated) {
            // Versions or subresources may have changed.
            if let Ok(t) = crd_resource_type(&updated) {
                st.types.insert(t.key(), t);
            }
        }
        Ok(updated)
    }

    fn delete(
        self: &Arc<Self>,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        name: &str,
        req: &Req,
    ) -> Result<Response, ApiError> {
        let options: Value = if req.body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_request(e.to_string()))?
        };
        let mut st = self.lock();
        let old = stored(&st, rt, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let (status, obj) = self.delete_locked(&mut st, rt, old, &options, req.dry_run())?;
        if obj["metadata"].get("deletionTimestamp").is_some() || rt.returns_deleted_object {
            return Ok(json_response(status, &present(rt, version, obj)));
        }
        let mut details = rt.details(name);
        details["uid"] = json!(meta_str(&obj, "uid").unwrap_or_default());
        Ok(json_response(
            status,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
        ))
    }

    fn delete_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        old: Value,
        options: &Value,
        dry_run: bool,
    ) -> Result<(StatusCode, Value), ApiError> {
        let name = meta_str(&old, "name").unwrap_or_default().to_string();
        let pre = &options["preconditions"];
        if let Some(uid) = pre["uid"].as_str()
            && Some(uid) != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                rt,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = pre["resourceVersion"].as_str()
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                rt,
                &name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion").unwrap_or_default()
                ),
            ));
        }
        if dry_run {
            return Ok((StatusCode::OK, old));
        }
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if old["metadata"].get("deletionTimestamp").is_some() {
                return Ok((StatusCode::OK, old));
            }
            let mut obj = old.clone();
            let meta = meta_mut(&mut obj);
            meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            let updated = self.commit(st, rt, EventType::Modified, obj, Some(old));
            return Ok((StatusCode::OK, updated));
        }
        let last = old.clone();
        Ok((StatusCode::OK, self.remove_locked(st, rt, last, old)))
    }

    /// Removes an object for good; a CRD takes its kind and objects along.
    fn remove_locked(&self, st: &mut State, rt: &ResourceType, last: Value, old: Value) -> Value {
        if rt.is_crd()
            && let Ok(t) = crd_resource_type(&old)
        {
            let served = st.types.get(&t.key()).and_then(|s| s.crd_uid.clone());
            let instances: Vec<Value> = st
                .objects
                .get(&t.key())
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            for instance in instances {
                self.commit(st, &t, EventType::Deleted, instance.clone(), Some(instance));
            }
            if served.is_some() && served == t.crd_uid {
                st.types.remove(&t.key());
            }
            st.objects.remove(&t.key());
        }
        self.commit(st, rt, EventType::Deleted, last, Some(old))
    }

    fn delete_collection(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: Option<&str>,
        req: &Req,
    ) -> Result<Response, ApiError> {
        let selectors = Selectors::parse(rt, req)?;
        let mut st = self.lock();
        let victims: Vec<Value> = st
            .objects
            .get(&rt.key())
            .map(|m| {
                m.iter()
                    .filter(|((obj_ns, _), obj)| {
                        ns.is_none_or(|ns| ns == obj_ns) && selectors.matches(obj)
                    })
                    .map(|(_, obj)| obj.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut deleted = Vec::new();
        for victim in victims {
            let (_, obj) = self.delete_locked(&mut st, rt, victim, &json!({}), req.dry_run())?;
            deleted.push(obj);
        }
        let rv = st.rv;
        Ok(list_page(&mut st, rt, version, rv, deleted, None))
    }
}

// ---------------------------------------------------------------------------
// Watch streams

struct WatchSpec {
    rt: ResourceType,
    version: String,
    ns: Option<String>,
    selectors: Selectors,
    bookmarks: bool,
}

impl WatchSpec {
    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        event_line(
            "BOOKMARK",
            &json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(&self.version), "metadata": metadata}),
        )
    }

    /// The lines for the events after `last`, and whether the watch must end.
    fn collect(&self, st: &State, last: &mut u64) -> (Vec<Bytes>, bool) {
        if *last < st.compacted_through {
            return (vec![expired_line(*last, st.compacted_through)], true);
        }
        let key = self.rt.key();
        let mut lines = Vec::new();
        for ev in st.events.iter().filter(|ev| ev.rv > *last && ev.key == key) {
            if self.ns.as_ref().is_some_and(|ns| *ns != ev.ns) {
                continue;
            }
            let now = self.selectors.matches(&ev.object);
            let before = ev.old.as_ref().is_some_and(|o| self.selectors.matches(o));
            let etype = match (ev.etype, before, now) {
                (EventType::Added, _, true) | (EventType::Modified, false, true) => "ADDED",
                (EventType::Modified, true, true) => "MODIFIED",
                (EventType::Modified, true, false) | (EventType::Deleted, true, _) => "DELETED",
                _ => continue,
            };
            lines.push(event_line(
                etype,
                &present(&self.rt, &self.version, ev.object.clone()),
            ));
        }
        *last = (*last).max(st.rv);
        let still_served = st
            .types
            .get(&key)
            .is_some_and(|t| t.crd_uid == self.rt.crd_uid);
        (lines, !still_served)
    }
}

struct WatchGuard(Arc<Inner>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn run_watch(
    inner: Arc<Inner>,
    spec: WatchSpec,
    tx: mpsc::Sender<Bytes>,
    initial: Vec<Bytes>,
    mut last: u64,
    expired: bool,
    timeout: Option<Duration>,
) {
    inner.open_watches.fetch_add(1, Ordering::SeqCst);
    let _guard = WatchGuard(inner.clone());
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut changes = inner.changes.subscribe();
    for line in initial {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    if expired {
        return;
    }
    let interval = inner.opts.bookmark_interval.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        changes.borrow_and_update();
        let (lines, end) = spec.collect(&inner.lock(), &mut last);
        for line in lines {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if end {
            return;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = ticker.tick(), if spec.bookmarks => {
                if tx.send(spec.bookmark(last, false)).await.is_err() {
                    return;
                }
            }
            () = sleep_until(deadline) => return,
            () = tx.closed() => return,
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn event_line(etype: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": etype, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// What a real API server sends on a watch from a compacted resourceVersion.
fn expired_line(rv: u64, oldest: u64) -> Bytes {
    event_line(
        "ERROR",
        &ApiError::expired(format!("too old resource version: {rv} ({oldest})")).status_json(),
    )
}

// ---------------------------------------------------------------------------
// Lists

fn list_page(
    st: &mut State,
    rt: &ResourceType,
    version: &str,
    rv: u64,
    mut items: Vec<Value>,
    limit: Option<usize>,
) -> Response {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = limit
        && items.len() > limit
    {
        let remaining = items.split_off(limit);
        let token = format!("{:032x}", rand::random::<u128>());
        metadata["continue"] = json!(token);
        metadata["remainingItemCount"] = json!(remaining.len());
        st.continues.insert(
            token,
            ContinueSnapshot {
                key: rt.key(),
                rv,
                remaining,
            },
        );
    }
    let items: Vec<Value> = items
        .into_iter()
        .map(|obj| {
            let mut obj = present(rt, version, obj);
            if rt.builtin
                && let Some(m) = obj.as_object_mut()
            {
                // The real server leaves these out of list items of built-in kinds.
                m.remove("apiVersion");
                m.remove("kind");
            }
            obj
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": rt.list_kind, "apiVersion": rt.api_version(version), "metadata": metadata, "items": items}),
    )
}

/// The objects of `key` as they were at resourceVersion `rv`, rebuilt by
/// undoing the retained events after it.
fn state_at(st: &State, key: &Key, rv: u64) -> BTreeMap<ObjKey, Value> {
    let mut objects = st.objects.get(key).cloned().unwrap_or_default();
    for ev in st.events.iter().rev().take_while(|ev| ev.rv > rv) {
        if &ev.key != key {
            continue;
        }
        let name = meta_str(&ev.object, "name").unwrap_or_default().to_string();
        match &ev.old {
            None => {
                objects.remove(&(ev.ns.clone(), name));
            }
            Some(old) => {
                objects.insert((ev.ns.clone(), name), old.clone());
            }
        }
    }
    objects
}

fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{rv}\"")))
}

fn too_large_rv(rv: u64, current: u64) -> ApiError {
    let mut e = ApiError::new(
        504,
        "Timeout",
        format!("Too large resource version: {rv}, current: {current}"),
    );
    e.details = Some(
        json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
    );
    e
}

// ---------------------------------------------------------------------------
// Selectors

enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

struct Selectors {
    labels: Vec<LabelReq>,
    /// (field, value, equal)
    fields: Vec<(String, String, bool)>,
}

impl Selectors {
    fn parse(rt: &ResourceType, req: &Req) -> Result<Self, ApiError> {
        let mut labels = Vec::new();
        for term in split_top_level(req.q("labelSelector").unwrap_or_default()) {
            labels.push(parse_label_term(&term)?);
        }
        let mut fields = Vec::new();
        for term in split_top_level(req.q("fieldSelector").unwrap_or_default()) {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            let supported = matches!(field, "metadata.name" | "metadata.namespace")
                || (field == "type" && rt.group.is_empty() && rt.plural == "secrets");
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            fields.push((field.to_string(), value.trim().to_string(), equal));
        }
        Ok(Self { labels, fields })
    }

    fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str);
        let labels_match = self.labels.iter().all(|req| match req {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => label(k).is_none_or(|l| !vs.iter().any(|v| v == l)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        labels_match
            && self.fields.iter().all(|(field, value, equal)| {
                let actual = match field.as_str() {
                    "metadata.name" => meta_str(obj, "name"),
                    "metadata.namespace" => meta_str(obj, "namespace"),
                    _ => obj[field.as_str()].as_str(),
                }
                .unwrap_or_default();
                (actual == value) == *equal
            })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    terms.push(current);
    terms
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_label_term(term: &str) -> Result<LabelReq, ApiError> {
    let set = |rest: &str| -> Result<Vec<String>, ApiError> {
        let rest = rest.trim();
        let inner = rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to parse requirement: found '{rest}', expected: '('"
                ))
            })?;
        Ok(inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect())
    };
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Ok(LabelReq::NotIn(k.trim().to_string(), set(rest)?));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Ok(LabelReq::In(k.trim().to_string(), set(rest)?));
    }
    if let Some(k) = term.strip_prefix('!') {
        return Ok(LabelReq::NotExists(k.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(LabelReq::NotEq(k.trim().to_string(), v.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("==") {
        return Ok(LabelReq::Eq(k.trim().to_string(), v.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once('=') {
        return Ok(LabelReq::Eq(k.trim().to_string(), v.trim().to_string()));
    }
    Ok(LabelReq::Exists(term.trim().to_string()))
}

// ---------------------------------------------------------------------------
// Paths

struct ParsedPath {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

/// `/api/v1/...` or `/apis/<group>/<version>/...`, then
/// `[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]`.
fn parse_path(path: &str) -> Option<ParsedPath> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    // `namespaces/<ns>/<plural>...` is namespaced, except the Namespace
    // object's own subresources `namespaces/<name>/{status,finalize}`.
    let namespace_subresource = group.is_empty()
        && rest.len() == 3
        && rest[0] == "namespaces"
        && matches!(rest[2], "status" | "finalize");
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() && !namespace_subresource => {
            (Some((*ns).to_string()), tail)
        }
        other => (None, other),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    if plural.is_empty() || name.is_some_and(str::is_empty) {
        return None;
    }
    Some(ParsedPath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural: plural.to_string(),
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    })
}

// ---------------------------------------------------------------------------
// Object helpers

fn stored<'a>(st: &'a State, rt: &ResourceType, ns: Option<&str>, name: &str) -> Option<&'a Value> {
    st.objects
        .get(&rt.key())?
        .get(&(ns.unwrap_or_default().to_string(), name.to_string()))
}

/// The object as the API answers it for `version`.
fn present(rt: &ResourceType, version: &str, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version(version)));
        m.insert("kind".into(), json!(rt.kind));
    }
    obj
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj["metadata"][field].as_str()
}

/// `metadata` as a mutable map (created if absent). `obj` must be an object.
fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// `ObjectMeta` is a typed Go struct with `omitempty` fields even for custom
/// resources: empty labels, annotations, finalizers etc. do not survive a write.
fn prune_metadata(obj: &mut Value) {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        meta.retain(|_, v| match v {
            Value::Null => false,
            Value::Object(m) => !m.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => true,
        });
    }
}

fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request is not an object",
        ));
    }
    Ok(v)
}

fn parse_apply(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let text =
                std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
        }
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the apply patch is not an object"));
    }
    Ok(v)
}

fn check_type_meta(obj: &mut Value, rt: &ResourceType, version: &str) -> Result<(), ApiError> {
    let expected = rt.api_version(version);
    if let Some(api_version) = obj["apiVersion"].as_str().filter(|v| !v.is_empty())
        && api_version != expected
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expected})"
        )));
    }
    if let Some(kind) = obj["kind"].as_str().filter(|v| !v.is_empty())
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    obj["apiVersion"] = json!(expected);
    obj["kind"] = json!(rt.kind);
    Ok(())
}

fn check_apply_type_meta(patch: &Value, rt: &ResourceType, version: &str) -> Result<(), ApiError> {
    if patch["apiVersion"].as_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "apiVersion must be set in apply patch",
        ));
    }
    if patch["kind"].as_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("kind must be set in apply patch"));
    }
    let mut copy = patch.clone();
    check_type_meta(&mut copy, rt, version)
}

fn name_mismatch(body_name: &str, url_name: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
    ))
}

/// RFC 1123 subdomain, like most Kubernetes names.
fn validate_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    let ok = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        return Ok(());
    }
    Err(ApiError::invalid(
        rt,
        name,
        "metadata.name",
        &format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ),
    ))
}

/// Everything but metadata (and status, when it is a subresource): a change
/// here bumps `metadata.generation`.
fn spec_of(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if rt.status_subresource {
            m.remove("status");
        }
    }
    v
}

fn normalize_secret(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    if let Some(Value::Object(string_data)) = m.remove("stringData") {
        if !m.get("data").is_some_and(Value::is_object) {
            m.insert("data".into(), json!({}));
        }
        if let Some(data) = m.get_mut("data").and_then(Value::as_object_mut) {
            for (k, v) in string_data {
                data.insert(k, json!(base64(v.as_str().unwrap_or_default().as_bytes())));
            }
        }
    }
    if m.get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        m.insert("type".into(), json!("Opaque"));
    }
}

// ---------------------------------------------------------------------------
// CRDs

/// A custom resource against its CRD's schema for the version written:
/// unknown fields pruned (refused with `fieldValidation=Strict`), defaults
/// applied, then OpenAPI and CEL validation (422 `Invalid` with every cause).
fn admit(
    rt: &ResourceType,
    write: &Write<'_>,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(schema) = rt.schemas.get(write.version) else {
        return Ok(());
    };
    let unknown = schema::prune(schema, obj);
    if write.strict && !unknown.is_empty() {
        return Err(strict_decoding(rt, write.version, &unknown));
    }
    schema::apply_defaults(schema, obj);
    let causes = schema::validate(schema, obj, old);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_causes(rt, name, &causes))
    }
}

/// A write to the `status` subresource: only `status` is pruned, defaulted
/// and validated (the rest is the stored object).
fn admit_status(
    rt: &ResourceType,
    write: &Write<'_>,
    name: &str,
    obj: &mut Value,
    old: &Value,
) -> Result<(), ApiError> {
    let Some(status_schema) = rt
        .schemas
        .get(write.version)
        .and_then(|s| s["properties"].get("status"))
    else {
        return Ok(());
    };
    let Some(status) = obj.get_mut("status") else {
        return Ok(());
    };
    let schema = json!({"type": "object", "properties": {"status": status_schema}});
    let mut wrapper = json!({"status": status.take()});
    let unknown = schema::prune(&schema, &mut wrapper);
    if write.strict && !unknown.is_empty() {
        return Err(strict_decoding(rt, write.version, &unknown));
    }
    schema::apply_defaults(&schema, &mut wrapper);
    let old_wrapper = json!({"status": old.get("status").cloned().unwrap_or(Value::Null)});
    let causes = schema::validate(&schema, &wrapper, Some(&old_wrapper));
    *status = wrapper["status"].take();
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_causes(rt, name, &causes))
    }
}

fn strict_decoding(rt: &ResourceType, version: &str, unknown: &[String]) -> ApiError {
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", "),
        kind = rt.kind
    ))
}

fn crd_resource_type(crd: &Value) -> Result<ResourceType, String> {
    let spec = &crd["spec"];
    let group = spec["group"]
        .as_str()
        .filter(|g| !g.is_empty())
        .ok_or("spec.group: Required value")?;
    let names = &spec["names"];
    let plural = names["plural"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or("spec.names.plural: Required value")?;
    let kind = names["kind"]
        .as_str()
        .filter(|k| !k.is_empty())
        .ok_or("spec.names.kind: Required value")?;
    let list_kind = names["listKind"]
        .as_str()
        .map_or_else(|| format!("{kind}List"), str::to_string);
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ));
        }
    };
    let versions = spec["versions"]
        .as_array()
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions: Required value")?;
    if versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count()
        != 1
    {
        return Err(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
                .into(),
        );
    }
    let served: Vec<String> = versions
        .iter()
        .filter(|v| v["served"].as_bool() == Some(true))
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    let status_subresource = versions
        .iter()
        .any(|v| v["subresources"].get("status").is_some());
    let expected_name = format!("{plural}.{group}");
    if meta_str(crd, "name") != Some(expected_name.as_str()) {
        return Err(format!(
            "metadata.name: Invalid value: {:?}: must be spec.names.plural+\".\"+spec.group",
            meta_str(crd, "name").unwrap_or_default()
        ));
    }
    Ok(ResourceType {
        group: group.to_string(),
        plural: plural.to_string(),
        kind: kind.to_string(),
        list_kind,
        namespaced,
        versions: served,
        status_subresource,
        tracks_generation: true,
        builtin: false,
        returns_deleted_object: true,
        crd_uid: meta_str(crd, "uid").map(str::to_string),
        schemas: versions
            .iter()
            .filter(|v| v["served"].as_bool() == Some(true))
            .filter_map(|v| {
                let name = v["name"].as_str()?;
                let schema = v["schema"].get("openAPIV3Schema")?;
                Some((name.to_string(), schema.clone()))
            })
            .collect(),
    })
}

fn default_crd_names(crd: &mut Value) {
    let kind = crd["spec"]["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let names = &mut crd["spec"]["names"];
    if names["listKind"].as_str().is_none() {
        names["listKind"] = json!(format!("{kind}List"));
    }
    if names["singular"].as_str().is_none() {
        names["singular"] = json!(kind.to_ascii_lowercase());
    }
}

fn set_crd_established(crd: &mut Value) {
    let now = now_rfc3339();
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    crd["status"] = json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
        ],
        "acceptedNames": crd["spec"]["names"].clone(),
        "storedVersions": storage,
    });
}

fn crd_is_established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

// ---------------------------------------------------------------------------
// Small utilities

fn new_uid() -> String {
    let a = rand::random::<u128>();
    let hex = format!("{a:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Now as RFC 3339 in UTC with whole seconds, like `metav1.Time`.
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
