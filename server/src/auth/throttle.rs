//! Login throttling: a sliding window of failed logins per account and per client address.
//!
//! Kept in memory, so it is **per server instance**: behind a load balancer with several
//! instances an attacker gets the allowance once per instance. Entries expire with their
//! window and the maps are bounded, so a flood of invented usernames cannot grow memory.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::storage::UnixMillis;

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures per account within `window_millis` before that account is refused.
    pub per_account: usize,
    /// Failures per client address within `window_millis` before that address is refused.
    pub per_address: usize,
    pub window_millis: UnixMillis,
    /// Accounts or addresses tracked at most (each map).
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            per_account: 5,
            per_address: 20,
            window_millis: 15 * 60 * 1000,
            max_tracked: 100_000,
        }
    }
}

/// Refused: try again after this many milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub UnixMillis);

impl RetryAfter {
    /// Whole seconds for a `Retry-After` header, at least 1.
    pub fn seconds(self) -> u64 {
        u64::try_from(((self.0 + 999) / 1000).max(1)).unwrap_or(1)
    }
}

#[derive(Debug)]
struct Windows<K> {
    failures: HashMap<K, VecDeque<UnixMillis>>,
}

impl<K> Default for Windows<K> {
    fn default() -> Self {
        Self {
            failures: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Windows<K> {
    fn retry_after(
        &mut self,
        key: &K,
        limit: usize,
        window: UnixMillis,
        now: UnixMillis,
    ) -> Option<RetryAfter> {
        let failures = self.failures.get_mut(key)?;
        while failures.front().is_some_and(|&at| at + window <= now) {
            failures.pop_front();
        }
        if failures.is_empty() {
            self.failures.remove(key);
            return None;
        }
        (failures.len() >= limit).then(|| {
            // The oldest failure that must leave the window for one more attempt.
            let oldest = failures[failures.len() - limit];
            RetryAfter(oldest + window - now)
        })
    }

    fn record(&mut self, key: K, limit: usize, window: UnixMillis, now: UnixMillis, max: usize) {
        if !self.failures.contains_key(&key) && self.failures.len() >= max {
            self.failures
                .retain(|_, f| f.back().is_some_and(|&at| at + window > now));
            if self.failures.len() >= max {
                // Still full of live entries: forget one rather than grow.
                if let Some(victim) = self.failures.keys().next().cloned() {
                    self.failures.remove(&victim);
                }
            }
        }
        let failures = self.failures.entry(key).or_default();
        failures.push_back(now);
        // Only the newest `limit` failures matter for the decision.
        while failures.len() > limit {
            failures.pop_front();
        }
    }
}

/// Failed-login counters for one server instance.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    accounts: Windows<String>,
    addresses: Windows<AddressKey>,
}

/// IPv4 addresses count alone; IPv6 ones by their /64, which one subscriber usually holds whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AddressKey([u8; 16]);

impl From<IpAddr> for AddressKey {
    fn from(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self(v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(v4.to_ipv6_mapped().octets()),
                None => {
                    let mut octets = v6.octets();
                    octets[8..].fill(0);
                    Self(octets)
                }
            },
        }
    }
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            state: Mutex::default(),
        }
    }

    /// `Err` when the account or the address has used up its failures: refuse without
    /// checking the password.
    pub fn check(
        &self,
        account: &str,
        address: Option<IpAddr>,
        now: UnixMillis,
    ) -> Result<(), RetryAfter> {
        let c = &self.config;
        let mut state = self.lock();
        let by_account =
            state
                .accounts
                .retry_after(&account_key(account), c.per_account, c.window_millis, now);
        let by_address = address.and_then(|a| {
            state
                .addresses
                .retry_after(&AddressKey::from(a), c.per_address, c.window_millis, now)
        });
        match by_account.into_iter().chain(by_address).max_by_key(|r| r.0) {
            Some(retry) => Err(retry),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, account: &str, address: Option<IpAddr>, now: UnixMillis) {
        let c = &self.config;
        let mut state = self.lock();
        state.accounts.record(
            account_key(account),
            c.per_account,
            c.window_millis,
            now,
            c.max_tracked,
        );
        if let Some(address) = address {
            state.addresses.record(
                AddressKey::from(address),
                c.per_address,
                c.window_millis,
                now,
                c.max_tracked,
            );
        }
    }

    /// A correct password clears the account's failures (not the address's: one known
    /// account must not reset the allowance for guessing others).
    pub fn record_success(&self, account: &str) {
        self.lock().accounts.failures.remove(&account_key(account));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is counters only; a panic elsewhere while holding it leaves them usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Usernames are case-sensitive, but guesses at `Budi` and `budi` count against one account.
fn account_key(account: &str) -> String {
    account.chars().take(64).collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            per_account: 3,
            per_address: 5,
            window_millis: 1000,
            max_tracked: 4,
        })
    }

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));

    #[test]
    fn an_account_is_refused_after_its_failures_until_the_window_slides() {
        let t = throttle();
        for now in [0, 100, 200] {
            assert_eq!(t.check("budi", HOME, now), Ok(()));
            t.record_failure("budi", HOME, now);
        }
        assert_eq!(t.check("budi", HOME, 300), Err(RetryAfter(700)));
        assert_eq!(t.check("BUDI", None, 300), Err(RetryAfter(700)));
        assert_eq!(t.check("siti", HOME, 300), Ok(()));
        // The first failure leaves the window at 1000: one more try is allowed.
        assert_eq!(t.check("budi", HOME, 1000), Ok(()));
        assert_eq!(RetryAfter(700).seconds(), 1);
        assert_eq!(RetryAfter(1001).seconds(), 2);
    }

    #[test]
    fn an_address_guessing_many_accounts_is_refused() {
        let t = throttle();
        for (i, name) in ["a1", "a2", "a3", "a4", "a5"].iter().enumerate() {
            t.record_failure(name, HOME, i as i64);
        }
        assert!(t.check("someone-new", HOME, 10).is_err());
        assert_eq!(t.check("someone-new", None, 10), Ok(()));
    }

    #[test]
    fn success_clears_the_account_only() {
        let t = throttle();
        for now in 0..3 {
            t.record_failure("budi", HOME, now);
        }
        t.record_success("budi");
        assert_eq!(t.check("budi", None, 5), Ok(()));
    }

    #[test]
    fn memory_stays_bounded() {
        let t = throttle();
        for i in 0..100 {
            t.record_failure(&format!("user{i}"), None, i);
        }
        assert!(t.lock().accounts.failures.len() <= 4);
    }

    #[test]
    fn ipv6_neighbours_share_a_budget() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert_eq!(AddressKey::from(a), AddressKey::from(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(
            AddressKey::from(mapped),
            AddressKey::from(HOME.expect("set"))
        );
    }
}
