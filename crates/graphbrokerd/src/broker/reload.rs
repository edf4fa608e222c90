//! Applying a reloaded configuration (SIGHUP): which profiles keep their account, which start over.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::lifecycle::ProfileState;
use super::slot::ProfileSlot;
use super::stores::StoreSet;
use super::{Broker, ProfileSet, browser_settings};
use crate::config::{Config, Profile};
use crate::idp::Platform;

/// What a reload did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Settings changed; the account stays (same tenant and client id), cached tokens are dropped.
    pub changed: Vec<String>,
    /// Tenant, authority, client id or store changed: the profile starts over (its stored account is read again
    /// and used only if it matches).
    pub replaced: Vec<String>,
}

/// Whether two versions of a profile sign in to the same place as the same app, so an account carries over.
fn same_identity(a: &Profile, b: &Profile) -> bool {
    a.authority == b.authority && a.client_id == b.client_id && a.store == b.store
}

impl Broker {
    /// Applies a reloaded config. Profiles whose tenant, authority, client id and store are unchanged keep their
    /// account (and a sign-in under way); changed settings drop their cached tokens. Profiles whose identity
    /// changed start over: their pending sign-in is cancelled and the stored account is read again. Every slot
    /// that is replaced is retired, so that a request or a write still holding it cannot act on the old settings.
    pub fn reload(&self, config: &Config, platform: Arc<dyn Platform>) -> ReloadSummary {
        let old = self.profile_set();
        let same_keyring = old.stores.keyring_service == config.keyring_service;
        let stores = if same_keyring {
            old.stores.clone()
        } else {
            StoreSet::open(&*self.stores, &config.keyring_service, Some(old.stores.memory.clone()))
        };
        let mut summary = ReloadSummary::default();
        let mut slots = BTreeMap::new();
        for (name, profile) in &config.profiles {
            let fresh = || {
                ProfileSlot::new(profile.clone(), stores.for_kind(profile.store), ProfileState::new(self.clock.clone()))
            };
            let slot = match old.slots.get(name) {
                Some(existing) if *existing.profile == *profile && same_keyring => existing.clone(),
                Some(existing) if same_identity(&existing.profile, profile) && same_keyring => {
                    summary.changed.push(name.clone());
                    let (state, signin) = existing.state.lock().expect("state lock").carry_over();
                    if let Some(signin) = signin {
                        signin.cancel("the profile's settings changed");
                    }
                    Arc::new(ProfileSlot::new(profile.clone(), stores.for_kind(profile.store), state))
                }
                Some(existing) => {
                    summary.replaced.push(name.clone());
                    retire(existing, "the profile's tenant, client id or store changed");
                    Arc::new(fresh())
                }
                None => {
                    summary.added.push(name.clone());
                    Arc::new(fresh())
                }
            };
            slots.insert(name.clone(), slot);
        }
        for (name, slot) in &old.slots {
            if !config.profiles.contains_key(name) {
                summary.removed.push(name.clone());
                retire(slot, "the profile was removed from the configuration");
            }
        }
        let set = ProfileSet {
            default_profile: config.default_profile.clone(),
            slots,
            stores,
            browser: browser_settings(config),
            notifications: config.notifications,
        };
        *self.profiles.write().expect("profiles lock") = Arc::new(set);
        *self.config.write().expect("config lock") = Arc::new(config.clone());
        *self.platform.write().expect("platform lock") = platform;
        self.changed();
        summary
    }
}

fn retire(slot: &ProfileSlot, why: &str) {
    let signin = slot.state.lock().expect("state lock").retire();
    if let Some(signin) = signin {
        signin.cancel(why);
    }
}
