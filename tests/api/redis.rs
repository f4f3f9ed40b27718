//! Tests against the running Redis (`DOORMAN_TEST_REDIS_URL`, default redis://127.0.0.1:6379):
//! limits and spent bot-check tokens shared by instances.

use doorman::config::{CaptchaProvider, RateLimitBackend, RateRule};
use doorman::core::secret::Secret;
use serde_json::json;

use crate::harness::{error_code, TestApp};
use crate::proxy::TcpProxy;
use crate::siteverify::{self, Siteverify, DUMMY_TOKEN};

fn redis_url() -> String {
    std::env::var("DOORMAN_TEST_REDIS_URL").ok().filter(|url| !url.is_empty()).unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

/// Starts an app on its own database that shares Redis keys under `prefix` and asks `provider`.
async fn instance(prefix: &str, redis: &str, provider: &Siteverify) -> TestApp {
    let (prefix, redis, verify_url) = (prefix.to_string(), redis.to_string(), provider.url());
    TestApp::spawn_with(move |config| {
        config.rate_limit.backend = RateLimitBackend::Redis;
        config.rate_limit.redis_url = Some(redis);
        config.rate_limit.redis_prefix = prefix;
        config.rate_limit.rules.insert("sign_in".into(), RateRule { max: 3, window: "60s".parse().unwrap() });
        config.captcha.provider = CaptchaProvider::Turnstile;
        config.captcha.secret = Some(Secret::new(siteverify::PASSING_SECRET));
        config.captcha.verify_url = Some(verify_url);
    })
    .await
}

async fn sign_in(app: &TestApp, token: &str) -> reqwest::Response {
    app.client.post(app.url("/sign-in/anonymous")).header("x-captcha-response", token).json(&json!({})).send().await.unwrap()
}

fn prefix() -> String {
    format!("doorman-test-{}", doorman::core::random::alphanumeric(12))
}

#[tokio::test]
async fn token_passes_once_across_instances() {
    let provider = Siteverify::start().await;
    let prefix = prefix();
    let first = instance(&prefix, &redis_url(), &provider).await;
    let second = instance(&prefix, &redis_url(), &provider).await;

    let (one, two) = tokio::join!(sign_in(&first, DUMMY_TOKEN), sign_in(&second, DUMMY_TOKEN));

    let mut statuses = [one.status().as_u16(), two.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 403]);
    assert_eq!(provider.requests().len(), 1, "the losing claim never reaches the provider");
}

#[tokio::test]
async fn limits_are_shared_across_instances() {
    let provider = Siteverify::start().await;
    let prefix = prefix();
    let first = instance(&prefix, &redis_url(), &provider).await;
    let second = instance(&prefix, &redis_url(), &provider).await;

    assert_eq!(sign_in(&first, "token-a").await.status(), 403);
    assert_eq!(sign_in(&second, "token-b").await.status(), 403);
    assert_eq!(sign_in(&first, "token-c").await.status(), 403);
    let limited = sign_in(&second, "token-d").await;

    assert_eq!(limited.status(), 429, "three requests on two instances used up the shared budget");
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(error_code(limited).await, "RATE_LIMITED");
}

#[tokio::test]
async fn unreachable_redis_answers_503() {
    let provider = Siteverify::start().await;
    let redis: url::Url = redis_url().parse().unwrap();
    let upstream = format!("{}:{}", redis.host_str().unwrap(), redis.port().unwrap_or(6379));
    let proxy = TcpProxy::start(tokio::net::lookup_host(upstream).await.unwrap().next().unwrap()).await;
    let app = instance(&prefix(), &format!("redis://{}", proxy.address), &provider).await;
    assert_eq!(app.get_session(&crate::harness::Creds::None).await.status(), 200);

    proxy.cut();
    let response = app.get_session(&crate::harness::Creds::None).await;

    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await, "SERVICE_UNAVAILABLE");
    let health = app.client.get(format!("{}/health", app.origin)).send().await.unwrap();
    assert_eq!(health.status(), 200, "liveness does not depend on Redis");

    proxy.restore();
    let mut recovered = false;
    for _ in 0..50 {
        if app.get_session(&crate::harness::Creds::None).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "requests succeed again within five seconds of Redis coming back");
}

#[test]
fn two_processes_share_one_limit_whatever_forwarded_for_says() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let redis = redis_url();
    let env = [
        ("DOORMAN_SECRET", crate::harness::SECRET),
        ("DOORMAN_ANONYMOUS__ENABLED", "true"),
        ("DOORMAN_SERVER__LISTEN", "127.0.0.1:0"),
        ("DOORMAN_RATE_LIMIT__BACKEND", "redis"),
        ("DOORMAN_RATE_LIMIT__REDIS_URL", redis.as_str()),
        ("DOORMAN_RATE_LIMIT__REDIS_PREFIX", prefix.as_str()),
        ("DOORMAN_RATE_LIMIT__RULES__SIGN_IN__MAX", "4"),
        ("DOORMAN_RATE_LIMIT__RULES__SIGN_IN__WINDOW", "60s"),
    ];
    let first = crate::process::Process::serve(dir.path(), &env, &["serve"]);
    let second = crate::process::Process::serve(dir.path(), &env, &["serve"]);
    let client = reqwest::blocking::Client::new();
    let sign_in = |process: &crate::process::Process, forwarded: &str| {
        client
            .post(process.url("/api/auth/sign-in/anonymous"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({}))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };

    // Each request claims another client address; from an untrusted peer the header is ignored.
    let statuses = [
        sign_in(&first, "198.51.100.1"),
        sign_in(&second, "198.51.100.2"),
        sign_in(&first, "198.51.100.3"),
        sign_in(&second, "198.51.100.4"),
        sign_in(&first, "198.51.100.5"),
        sign_in(&second, "198.51.100.6"),
    ];
    let _ = first.terminate();
    let _ = second.terminate();

    assert_eq!(statuses, [200, 200, 200, 200, 429, 429], "one combined budget of four for 127.0.0.1");
}
