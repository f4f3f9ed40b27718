//! Redis for state that several instances share: rate-limit windows and claimed bot-check tokens.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use crate::core::rate_limit::{Decision, Limit, Rule};

/// Longest wait for one Redis command; past it the request answers 503.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Counts a hit and opens the window on the first one, atomically: returns the count and the
/// milliseconds until the window closes.
const HIT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

/// A Redis connection with a key prefix, so several deployments can share one server.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    hit: Script,
}

impl RedisStore {
    /// Connects to `url`; the connection reconnects by itself after a failure.
    ///
    /// # Errors
    /// An invalid URL, or a server that cannot be reached at start.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("rate_limit.redis_url is not a valid Redis URL")?;
        // Reconnection waits at most a second between attempts, so an instance recovers within
        // about a second of Redis coming back.
        let config = ConnectionManagerConfig::new()
            .set_max_delay(1000)
            .set_number_of_retries(3)
            .set_connection_timeout(COMMAND_TIMEOUT)
            .set_response_timeout(COMMAND_TIMEOUT);
        let connection = tokio::time::timeout(COMMAND_TIMEOUT, client.get_connection_manager_with_config(config))
            .await
            .context("connecting to Redis timed out")?
            .context("connecting to Redis")?;
        Ok(Self { connection, prefix: prefix.to_string(), hit: Script::new(HIT_SCRIPT) })
    }

    /// Counts one hit of `key` under `rule`.
    ///
    /// # Errors
    /// Redis is unreachable or too slow.
    pub async fn hit(&self, rule: Rule, key: &str, limit: Limit) -> anyhow::Result<Decision> {
        let name = format!("{}:rate:{}:{key}", self.prefix, rule.name());
        let window = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX);
        let mut connection = self.connection.clone();
        let (count, ttl): (u64, u64) = timed(self.hit.key(&name).arg(window).invoke_async(&mut connection)).await?;

        let reset = Duration::from_millis(ttl);
        if count > u64::from(limit.max) {
            return Ok(Decision::Limited { limit: limit.max, retry_after: reset });
        }
        let remaining = limit.max - u32::try_from(count).unwrap_or(limit.max);
        Ok(Decision::Allowed { limit: limit.max, remaining, reset })
    }

    /// Returns the limited decision `key` would get now, without counting.
    ///
    /// # Errors
    /// Redis is unreachable or too slow.
    pub async fn peek(&self, rule: Rule, key: &str, limit: Limit) -> anyhow::Result<Option<Decision>> {
        let name = format!("{}:rate:{}:{key}", self.prefix, rule.name());
        let mut connection = self.connection.clone();
        let (count, ttl): (Option<u64>, i64) =
            timed(redis::pipe().get(&name).pttl(&name).query_async(&mut connection)).await?;
        let limited = count.unwrap_or(0) >= u64::from(limit.max) && ttl > 0;
        Ok(limited.then(|| Decision::Limited { limit: limit.max, retry_after: Duration::from_millis(ttl.unsigned_abs()) }))
    }

    /// Claims a token hash for `lifetime` with `SET NX PX`; false when it was claimed before.
    ///
    /// # Errors
    /// Redis is unreachable or too slow.
    pub async fn claim(&self, hash: &str, lifetime: Duration) -> anyhow::Result<bool> {
        let name = format!("{}:spent:{hash}", self.prefix);
        let mut connection = self.connection.clone();
        let millis = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        let set: Option<String> =
            timed(redis::cmd("SET").arg(&name).arg(1).arg("NX").arg("PX").arg(millis).query_async(&mut connection)).await?;
        Ok(set.is_some())
    }

    /// Releases a claim.
    ///
    /// # Errors
    /// Redis is unreachable or too slow.
    pub async fn release(&self, hash: &str) -> anyhow::Result<()> {
        let name = format!("{}:spent:{hash}", self.prefix);
        let mut connection = self.connection.clone();
        let _: i64 = timed(redis::cmd("DEL").arg(&name).query_async(&mut connection)).await?;
        Ok(())
    }
}

async fn timed<T>(command: impl std::future::Future<Output = redis::RedisResult<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(COMMAND_TIMEOUT, command)
        .await
        .context("a Redis command timed out")?
        .context("a Redis command failed")
}
