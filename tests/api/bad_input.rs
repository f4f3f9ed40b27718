//! Malformed cookies, bearer values, bodies, headers and paths: each gets a 4xx JSON error, or
//! `null` where get-session returns it, and never a 500.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::TestApp;

enum Expect {
    Error(u16, &'static str),
    Null,
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Option<Vec<u8>>,
    expect: Expect,
}

fn case(name: &'static str, method: Method, path: &str, expect: Expect) -> Case {
    Case { name, method, path: path.to_string(), headers: Vec::new(), body: None, expect }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn json(self, body: &str) -> Self {
        self.header("content-type", "application/json").body(body)
    }
}

fn cases(bearer: &str) -> Vec<Case> {
    use Expect::{Error, Null};
    let auth = |value: &str| format!("Bearer {value}");
    let sig44 = "A".repeat(43) + "=";
    vec![
        case("text body", Method::POST, "/api/auth/sign-in/anonymous", Error(415, "UNSUPPORTED_MEDIA_TYPE"))
            .header("content-type", "text/plain")
            .body("{}"),
        case("body without content type", Method::POST, "/api/auth/sign-in/anonymous", Error(415, "UNSUPPORTED_MEDIA_TYPE")).body("{}"),
        case("form body", Method::POST, "/api/auth/sign-out", Error(415, "UNSUPPORTED_MEDIA_TYPE"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("a=b"),
        case("truncated json", Method::POST, "/api/auth/sign-in/anonymous", Error(400, "BAD_REQUEST")).json("{\"a\":"),
        case("invalid utf-8 json", Method::POST, "/api/auth/sign-out", Error(400, "BAD_REQUEST"))
            .header("content-type", "application/json")
            .body(vec![b'{', b'"', 0xff, 0xfe, b'"', b'}']),
        case("array body", Method::POST, "/api/auth/sign-in/anonymous", Error(400, "VALIDATION_ERROR")).json("[]"),
        case("string body", Method::POST, "/api/auth/sign-out", Error(400, "VALIDATION_ERROR")).json("\"x\""),
        case("body over 64 KiB", Method::POST, "/api/auth/sign-in/anonymous", Error(413, "PAYLOAD_TOO_LARGE"))
            .json(&format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024))),
        case("token of wrong type", Method::POST, "/api/auth/revoke-session", Error(400, "VALIDATION_ERROR"))
            .header("authorization", auth(bearer))
            .json("{\"token\":123}"),
        case("name of wrong type", Method::POST, "/api/auth/update-user", Error(400, "VALIDATION_ERROR"))
            .header("authorization", auth(bearer))
            .json("{\"name\":{\"a\":1}}"),
        case("callback of wrong type", Method::POST, "/api/auth/sign-out", Error(400, "VALIDATION_ERROR")).json("{\"callbackURL\":5}"),
        case("garbage cookie", Method::GET, "/api/auth/get-session", Null).header("cookie", "doorman.session_token=garbage"),
        case("cookie with bad base64", Method::GET, "/api/auth/get-session", Null)
            .header("cookie", format!("doorman.session_token={}.{}", "a".repeat(32), "!".repeat(43) + "=")),
        case("cookie with bad percent escape", Method::GET, "/api/auth/get-session", Null).header("cookie", "doorman.session_token=%ZZ%"),
        case("cookie with oversized value", Method::GET, "/api/auth/get-session", Null)
            .header("cookie", format!("doorman.session_token={}.{sig44}", "a".repeat(6000))),
        case("cookie without a name", Method::GET, "/api/auth/get-session", Null).header("cookie", "=;;=;"),
        case("empty bearer", Method::GET, "/api/auth/get-session", Null).header("authorization", "Bearer "),
        case("basic authorization", Method::GET, "/api/auth/get-session", Null).header("authorization", "Basic dXNlcjpwYXNz"),
        case("bearer with forged signature", Method::GET, "/api/auth/get-session", Null)
            .header("authorization", format!("Bearer {}.{sig44}", "a".repeat(32))),
        case("bearer with many dots", Method::GET, "/api/auth/get-session", Null).header("authorization", "Bearer a.b.c.d"),
        case("bearer with non-ascii bytes", Method::GET, "/api/auth/get-session", Null)
            .header("authorization", b"Bearer \xff\xfe.abc".to_vec()),
        case("unknown route", Method::GET, "/api/auth/does-not-exist", Error(404, "NOT_FOUND")),
        case("trailing slash", Method::GET, "/api/auth/get-session/", Error(404, "NOT_FOUND")),
        case("double slash", Method::GET, "/api/auth//get-session", Error(404, "NOT_FOUND")),
        case("dot segments", Method::GET, "/api/auth/%2e%2e/health", Error(404, "NOT_FOUND")),
        case("wrong method", Method::DELETE, "/api/auth/sign-out", Error(404, "NOT_FOUND")),
        case("post to a get route", Method::POST, "/api/auth/get-session", Error(404, "NOT_FOUND")).json("{}"),
        case("outside the base path", Method::GET, "/sign-in/anonymous", Error(404, "NOT_FOUND")),
        case("bad boolean in query", Method::GET, "/api/auth/get-session?disableRefresh=maybe", Error(400, "VALIDATION_ERROR")),
        case("unparseable origin on a cookie write", Method::POST, "/api/auth/sign-out", Error(403, "INVALID_ORIGIN"))
            .header("cookie", format!("doorman.session_token={}.{sig44}", "a".repeat(32)))
            .header("origin", "not a url")
            .json("{}"),
    ]
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let app = TestApp::spawn().await;
    let bearer = app.guest().await.signed;
    let cases = cases(&bearer);
    assert!(cases.len() >= 20);

    for case in cases {
        let mut request = app.client.request(case.method.clone(), format!("{}{}", app.origin, case.path));
        for (name, value) in &case.headers {
            request = request.header(HeaderName::from_static(name), HeaderValue::from_bytes(value).unwrap());
        }
        if let Some(body) = case.body.clone() {
            request = request.body(body);
        }
        let response = request.send().await.unwrap_or_else(|error| panic!("{}: {error}", case.name));

        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(content_type.as_deref(), Some("application/json"), "{}", case.name);
        let body: Value = response.json().await.unwrap_or_else(|error| panic!("{}: body is not JSON: {error}", case.name));
        match case.expect {
            Expect::Error(expected, code) => {
                assert_eq!(status, expected, "{}: {body}", case.name);
                assert_eq!(body["code"], code, "{}", case.name);
                assert!(body["message"].is_string(), "{}", case.name);
            }
            Expect::Null => {
                assert_eq!(status, 200, "{}", case.name);
                assert_eq!(body, Value::Null, "{}", case.name);
            }
        }
    }
}

#[tokio::test]
async fn slow_header_client_is_cut_off() {
    let app = TestApp::spawn_with(|config| config.server.header_read_timeout = "1s".parse().unwrap()).await;
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();

    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;

    assert!(read.is_ok(), "the server kept a connection with unfinished headers open");
    assert!(!String::from_utf8_lossy(&buffer).contains("200 OK"));
    assert_eq!(app.get("/ok", &crate::harness::Creds::None).await.status(), 200, "the server still serves others");
}

#[tokio::test]
async fn slow_body_gets_request_timeout() {
    let app = TestApp::spawn_with(|config| config.server.request_timeout = "1s".parse().unwrap()).await;
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let head = "POST /api/auth/sign-in/anonymous HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();

    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await.expect("no answer");
    let answer = String::from_utf8_lossy(&buffer[..read.unwrap()]).to_string();

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}
