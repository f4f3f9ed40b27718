//! Rate-limit rules and the in-memory limiter: at most `max` hits per key in each window.
//!
//! A window opens at a key's first hit and lasts `window`; the hits after `max` in that window are
//! limited until it closes. The in-memory limiter keeps at most `capacity` keys and evicts the
//! oldest windows first, so a flood of distinct keys costs bounded memory.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::error::CoreError;
use super::time::{Clock, Millis};
use crate::redis_store::RedisStore;
use crate::config::RateLimitConfig;

/// A named rate-limit rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Every route not covered by another rule, per client IP.
    SessionRead,
    /// `/sign-in/*`, `/email-otp/*` and `/captcha/challenge`, per client IP.
    SignIn,
    /// `/sign-in/anonymous`, per client IP.
    GuestCreate,
    /// Codes sent, per email address.
    CodeSend,
    /// Wrong codes, per client IP across all emails.
    CodeFail,
}

impl Rule {
    pub const ALL: [Rule; 5] = [Rule::SessionRead, Rule::SignIn, Rule::GuestCreate, Rule::CodeSend, Rule::CodeFail];

    /// The rule's name in `rate_limit.rules`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::SessionRead => "session_read",
            Rule::SignIn => "sign_in",
            Rule::GuestCreate => "guest_create",
            Rule::CodeSend => "code_send",
            Rule::CodeFail => "code_fail",
        }
    }

    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.name() == name)
    }

    /// The production default of the rule.
    pub fn default_limit(self) -> Limit {
        let (max, seconds) = match self {
            Rule::SessionRead => (300, 60),
            Rule::SignIn => (10, 60),
            Rule::GuestCreate => (30, 3600),
            Rule::CodeSend => (3, 600),
            Rule::CodeFail => (5, 600),
        };
        Limit { max, window: Duration::from_secs(seconds) }
    }
}

/// At most `max` hits per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

/// The limit of every rule: the defaults with `rate_limit.rules` overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits([Limit; 5]);

impl Limits {
    /// # Errors
    /// An override for a rule name that does not exist, with the names that do.
    pub fn from_config(config: &RateLimitConfig) -> Result<Self, String> {
        let mut limits = Rule::ALL.map(Rule::default_limit);
        for (name, rule) in &config.rules {
            let Some(known) = Rule::from_name(name) else {
                let names: Vec<&str> = Rule::ALL.iter().map(|rule| rule.name()).collect();
                return Err(format!("unknown rule `rate_limit.rules.{name}`; the rules are {}", names.join(", ")));
            };
            limits[known as usize] = Limit { max: rule.max, window: rule.window.get() };
        }
        Ok(Self(limits))
    }

    pub fn get(&self, rule: Rule) -> Limit {
        self.0[rule as usize]
    }
}

/// The outcome of one hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The hit counts and passes; `remaining` hits are left until the window closes in `reset`.
    Allowed { limit: u32, remaining: u32, reset: Duration },
    /// The key used up its window; it may try again after `retry_after`.
    Limited { limit: u32, retry_after: Duration },
}

/// The key of a client address: IPv4 as it is, IPv6 by its /64 network, because one IPv6 client
/// usually has a whole /64.
pub fn ip_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                let network = std::net::Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0);
                format!("{network}/64")
            }
        },
    }
}

struct Window {
    opened: Millis,
    hits: u32,
    /// Bumped each time the window reopens, so stale entries of the eviction queue can be recognized.
    generation: u64,
}

#[derive(Default)]
struct State {
    windows: HashMap<(Rule, String), Window>,
    /// Keys in the order their current windows opened, oldest first; may hold stale entries.
    order: VecDeque<((Rule, String), u64)>,
    next_generation: u64,
}

/// A limiter that keeps its counters in this process.
pub struct MemoryLimiter {
    limits: Limits,
    clock: Clock,
    capacity: usize,
    state: Mutex<State>,
}

impl MemoryLimiter {
    /// A limiter that tracks at most `capacity` keys.
    pub fn new(limits: Limits, clock: Clock, capacity: usize) -> Self {
        Self { limits, clock, capacity: capacity.max(1), state: Mutex::new(State::default()) }
    }

    /// Counts one hit of `key` under `rule` and decides whether it passes.
    pub fn hit(&self, rule: Rule, key: &str) -> Decision {
        let limit = self.limits.get(rule);
        let now = self.clock.now();
        let mut state = self.state.lock().expect("the limiter's lock is never poisoned");
        let state = &mut *state;

        let id = (rule, key.to_string());
        let expired = state.windows.get(&id).is_none_or(|window| now >= window.opened + limit.window);
        if expired {
            state.next_generation += 1;
            let generation = state.next_generation;
            state.windows.insert(id.clone(), Window { opened: now, hits: 0, generation });
            state.order.push_back((id.clone(), generation));
            evict(state, self.capacity);
        }

        let window = state.windows.get_mut(&id).expect("the window was just ensured");
        let reset = Duration::from_millis(u64::try_from((window.opened + limit.window).0 - now.0).unwrap_or(0));
        if window.hits >= limit.max {
            return Decision::Limited { limit: limit.max, retry_after: reset };
        }
        window.hits += 1;
        Decision::Allowed { limit: limit.max, remaining: limit.max - window.hits, reset }
    }

    /// Returns the limited decision `key` would get now, without counting a hit; `None` while
    /// hits remain.
    pub fn peek(&self, rule: Rule, key: &str) -> Option<Decision> {
        let limit = self.limits.get(rule);
        let now = self.clock.now();
        let state = self.state.lock().expect("the limiter's lock is never poisoned");
        let window = state.windows.get(&(rule, key.to_string()))?;
        let closes = window.opened + limit.window;
        if now >= closes || window.hits < limit.max {
            return None;
        }
        let retry_after = Duration::from_millis(u64::try_from(closes.0 - now.0).unwrap_or(0));
        Some(Decision::Limited { limit: limit.max, retry_after })
    }

    /// The number of keys tracked now.
    pub fn tracked_keys(&self) -> usize {
        self.state.lock().expect("the limiter's lock is never poisoned").windows.len()
    }
}

/// Drops the oldest windows until at most `capacity` keys remain, and compacts the queue when
/// stale entries dominate it.
fn evict(state: &mut State, capacity: usize) {
    while state.windows.len() > capacity {
        let Some((id, generation)) = state.order.pop_front() else { break };
        if state.windows.get(&id).is_some_and(|window| window.generation == generation) {
            state.windows.remove(&id);
        }
    }
    if state.order.len() > 2 * capacity {
        let windows = &state.windows;
        state.order.retain(|(id, generation)| windows.get(id).is_some_and(|window| window.generation == *generation));
    }
}

/// The configured limiter: counters in this process, or in Redis shared by every instance.
pub enum RateLimiter {
    Memory(MemoryLimiter),
    Redis { redis: RedisStore, limits: Limits },
}

impl RateLimiter {
    /// Counts one hit of `key` under `rule` and decides whether it passes.
    ///
    /// # Errors
    /// `LimiterUnavailable` when Redis cannot be reached.
    pub async fn hit(&self, rule: Rule, key: &str) -> Result<Decision, CoreError> {
        match self {
            RateLimiter::Memory(limiter) => Ok(limiter.hit(rule, key)),
            RateLimiter::Redis { redis, limits } => redis.hit(rule, key, limits.get(rule)).await.map_err(unavailable),
        }
    }

    /// Returns the limited decision `key` would get now, without counting.
    ///
    /// # Errors
    /// `LimiterUnavailable` when Redis cannot be reached.
    pub async fn peek(&self, rule: Rule, key: &str) -> Result<Option<Decision>, CoreError> {
        match self {
            RateLimiter::Memory(limiter) => Ok(limiter.peek(rule, key)),
            RateLimiter::Redis { redis, limits } => redis.peek(rule, key, limits.get(rule)).await.map_err(unavailable),
        }
    }
}

fn unavailable(error: anyhow::Error) -> CoreError {
    tracing::error!(error = format!("{error:#}"), "the rate limiter's Redis is unavailable");
    CoreError::LimiterUnavailable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateRule;

    fn limiter(max: u32, window_seconds: u64, capacity: usize) -> (MemoryLimiter, Clock) {
        let mut config = RateLimitConfig::default();
        config.rules.insert("sign_in".into(), RateRule { max, window: crate::config::Duration::seconds(window_seconds) });
        let clock = Clock::manual(Millis(1_000_000));
        (MemoryLimiter::new(Limits::from_config(&config).unwrap(), clock.clone(), capacity), clock)
    }

    #[test]
    fn allows_max_hits_then_limits() {
        let (limiter, _) = limiter(3, 60, 100);

        for remaining in [2, 1, 0] {
            assert_eq!(
                limiter.hit(Rule::SignIn, "1.2.3.4"),
                Decision::Allowed { limit: 3, remaining, reset: Duration::from_secs(60) }
            );
        }

        assert_eq!(limiter.hit(Rule::SignIn, "1.2.3.4"), Decision::Limited { limit: 3, retry_after: Duration::from_secs(60) });
    }

    #[test]
    fn window_reopens_after_it_closes() {
        let (limiter, clock) = limiter(1, 60, 100);
        limiter.hit(Rule::SignIn, "k");

        clock.advance(Duration::from_secs(59));
        assert_eq!(limiter.hit(Rule::SignIn, "k"), Decision::Limited { limit: 1, retry_after: Duration::from_secs(1) });

        clock.advance(Duration::from_secs(1));
        assert!(matches!(limiter.hit(Rule::SignIn, "k"), Decision::Allowed { remaining: 0, .. }));
    }

    #[test]
    fn keys_and_rules_count_separately() {
        let (limiter, _) = limiter(1, 60, 100);
        limiter.hit(Rule::SignIn, "a");

        assert!(matches!(limiter.hit(Rule::SignIn, "b"), Decision::Allowed { .. }));
        assert!(matches!(limiter.hit(Rule::SessionRead, "a"), Decision::Allowed { .. }));
        assert!(matches!(limiter.hit(Rule::SignIn, "a"), Decision::Limited { .. }));
    }

    #[test]
    fn memory_stays_within_capacity() {
        let (limiter, _) = limiter(1, 60, 10);

        for index in 0..1000 {
            limiter.hit(Rule::SignIn, &format!("key-{index}"));
        }

        assert_eq!(limiter.tracked_keys(), 10);
        assert!(matches!(limiter.hit(Rule::SignIn, "key-999"), Decision::Limited { .. }), "the newest keys are kept");
        assert!(matches!(limiter.hit(Rule::SignIn, "key-0"), Decision::Allowed { .. }), "the oldest keys are evicted");
    }

    #[test]
    fn peek_counts_nothing() {
        let (limiter, _) = limiter(1, 60, 100);
        assert_eq!(limiter.peek(Rule::SignIn, "k"), None);
        assert_eq!(limiter.peek(Rule::SignIn, "k"), None);

        limiter.hit(Rule::SignIn, "k");

        assert_eq!(limiter.peek(Rule::SignIn, "k"), Some(Decision::Limited { limit: 1, retry_after: Duration::from_secs(60) }));
    }

    #[test]
    fn defaults_follow_the_rule_table() {
        let limits = Limits::from_config(&RateLimitConfig::default()).unwrap();
        assert_eq!(limits.get(Rule::SignIn), Limit { max: 10, window: Duration::from_secs(60) });
        assert_eq!(limits.get(Rule::GuestCreate), Limit { max: 30, window: Duration::from_secs(3600) });
        assert_eq!(limits.get(Rule::CodeSend), Limit { max: 3, window: Duration::from_secs(600) });
        assert_eq!(limits.get(Rule::CodeFail), Limit { max: 5, window: Duration::from_secs(600) });
        assert_eq!(limits.get(Rule::SessionRead), Limit { max: 300, window: Duration::from_secs(60) });
    }

    #[test]
    fn unknown_rule_name_is_rejected() {
        let mut config = RateLimitConfig::default();
        config.rules.insert("signin".into(), RateRule { max: 1, window: crate::config::Duration::seconds(1) });
        let error = Limits::from_config(&config).unwrap_err();
        assert!(error.contains("sign_in"), "{error}");
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let first: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let second: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(first), "2001:db8:1:2::/64");
        assert_eq!(ip_key(first), ip_key(second));
        assert_ne!(ip_key(first), ip_key(other));
        assert_eq!(ip_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(ip_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
