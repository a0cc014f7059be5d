//! A request to the server outside the bulk path (templates, mappings):
//! a transport failure is `Unreachable` naming the path, an error status an
//! `Error::Status` with the start of the body.

use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::response::Response;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::Value;

use crate::Error;

fn unreachable(path: &str) -> impl FnOnce(elasticsearch::Error) -> Error + '_ {
    move |e| Error::Unreachable {
        url: path.to_string(),
        message: e.to_string(),
    }
}

/// `method path?query` with `body` as JSON; the response, whatever its
/// status.
pub(crate) async fn send(
    client: &Elasticsearch,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Response, Error> {
    client
        .transport()
        .send(
            method,
            path,
            HeaderMap::new(),
            (!query.is_empty()).then_some(query),
            body.map(|b| b.to_string().into_bytes()),
            None,
        )
        .await
        .map_err(unreachable(path))
}

/// `GET path?query` as JSON; `None` when the user may not read it (401,
/// 403), after a warning that `unchecked` is not checked and the fix.
/// Another error status is an error.
pub(crate) async fn get_if_allowed(
    client: &Elasticsearch,
    path: &str,
    query: &[(&str, &str)],
    unchecked: &str,
) -> Result<Option<Value>, Error> {
    let resp = send(client, Method::Get, path, query, None).await?;
    let status = resp.status_code().as_u16();
    if matches!(status, 401 | 403) {
        tracing::warn!(status, path, "{unchecked}");
        return Ok(None);
    }
    if !resp.status_code().is_success() {
        return Err(status_error(format!("GET {path}"), resp).await);
    }
    json(resp, path).await.map(Some)
}

/// The body of `resp` (a response to `path`) as JSON.
pub(crate) async fn json(resp: Response, path: &str) -> Result<Value, Error> {
    resp.json().await.map_err(unreachable(path))
}

/// The error for a response with an error status: the request, the status
/// and the start of the body.
pub(crate) async fn status_error(what: String, resp: Response) -> Error {
    let status = resp.status_code().as_u16();
    let body = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    Error::Status { what, status, body }
}
