//! The Lua scripts behind every multi-key operation of the Redis store.
//!
//! Each script is the shared prelude (`lua/common.lua`: key names, queue
//! moves, receipts, gauges) followed by its own body, compiled into the
//! binary. `redis::Script` runs them with EVALSHA and loads them again when
//! a restarted Redis has forgotten them.

use ::redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
    // Scripts that admit messages: the admission function follows the
    // shared prelude.
    (admit $file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!("lua/admit_items.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
    // The OTP scripts: the OTP prelude (`lua/otp.lua`) follows the shared one.
    (otp $file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!("lua/otp.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
}

/// Every script, hashed once at start.
pub(super) struct Scripts {
    pub admit: Script,
    pub bcast_create: Script,
    pub group_swap: Script,
    pub bcast_fanout: Script,
    pub bcast_decide: Script,
    pub claim: Script,
    pub record: Script,
    pub receipts: Script,
    pub maintain: Script,
    pub release: Script,
    pub gauges: Script,
    pub inbound: Script,
    pub claim_webhooks: Script,
    pub finish_webhooks: Script,
    pub create_key: Script,
    pub revoke_key: Script,
    pub otp_put: Script,
    pub otp_attempt: Script,
    pub otp_cancel: Script,
    pub otp_budgets: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            admit: script!(admit "admit.lua"),
            bcast_create: script!("bcast_create.lua"),
            group_swap: script!("group_swap.lua"),
            bcast_fanout: script!(admit "bcast_fanout.lua"),
            bcast_decide: script!("bcast_decide.lua"),
            claim: script!("claim.lua"),
            record: script!("record.lua"),
            receipts: script!("receipts.lua"),
            maintain: script!("maintain.lua"),
            release: script!("release.lua"),
            gauges: script!("gauges.lua"),
            inbound: script!("inbound.lua"),
            claim_webhooks: script!("claim_webhooks.lua"),
            finish_webhooks: script!("finish_webhooks.lua"),
            create_key: script!("create_key.lua"),
            revoke_key: script!("revoke_key.lua"),
            otp_put: script!(otp "otp_put.lua"),
            otp_attempt: script!(otp "otp_attempt.lua"),
            otp_cancel: script!(otp "otp_cancel.lua"),
            otp_budgets: script!(otp "otp_budgets.lua"),
        }
    }
}
