//! What a carrier's `command_status` on a `submit_sm_resp` means for the
//! message: the one table that decides retry, throttle or failover.
//!
//! | status | code | verdict | why |
//! |---|---|---|---|
//! | ESME_RTHROTTLED | 0x58 | throttled | the SMSC's rate limit: slow down, retry soon |
//! | ESME_RMSGQFUL | 0x14 | throttled | the SMSC's queue for us is full: same remedy |
//! | ESME_RSYSERR | 0x08 | temporary | SMSC-side fault |
//! | ESME_RINVBNDSTS, ESME_RALYBND | 0x04, 0x05 | rebind | session state confusion: the bind is dropped and bound again, the message retried |
//! | ESME_RSUBMITFAIL | 0x45 | temporary | generic "try again" |
//! | ESME_RX_T_APPN | 0x64 | temporary | the SMSC's own "temporary application error" |
//! | ESME_RDELIVERYFAILURE | 0xFE | temporary | transient delivery failure |
//! | ESME_RUNKNOWNERR | 0xFF | temporary | nothing better known |
//! | ESME_RINVMSGLEN … ESME_RINVDSTNPI, ESME_RINVESMCLASS, ESME_RINVDCS, ESME_RINVTLV* | 0x01, 0x06–0x07, 0x0A–0x0B, 0x43, 0x48–0x51, 0x53, 0x61–0x63, 0xC0–0xC4, 0x104 | permanent | this message is malformed for this carrier: resending it verbatim cannot help |
//! | ESME_RX_P_APPN, ESME_RX_R_APPN | 0x65, 0x66 | permanent | the SMSC says "permanent" / "rejected" |
//! | ESME_RINVCMDLEN, ESME_RINVCMDID | 0x02, 0x03 | permanent | the carrier does not speak our submit_sm |
//! | ESME_RINVSERTYP, ESME_RSERTYP*, ESME_RPROHIBITED | 0x15, 0x100–0x103, 0x101 | permanent | not allowed on this account |
//! | anything else (incl. vendor codes 0x400–0x4FF) | | temporary | unknown: retry, and after `dispatch.max_attempts` fail over |
//!
//! Permanent moves the message to the next connector of its route (or fails
//! it); temporary retries on the same connector with backoff; throttled also
//! pauses the bind for `throttle_pause`; rebind retries like temporary and
//! makes the session unbind, drop the connection and bind again (the SMSC no
//! longer sees us as bound, so nothing sent on this session can succeed).

use rusmpp::CommandStatus;

/// What to do after a non-zero `command_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The carrier asks us to slow down.
    Throttled,
    /// Worth retrying on this connector.
    Temporary,
    /// Worth retrying, after this bind is dropped and bound again.
    Rebind,
    /// This connector will never take this message.
    Permanent,
}

/// Classifies a `submit_sm_resp` (or `generic_nack`) status; see the module table.
pub fn classify(status: CommandStatus) -> Verdict {
    use CommandStatus as S;
    match status {
        S::EsmeRthrottled | S::EsmeRmsgqful => Verdict::Throttled,
        S::EsmeRinvbndsts | S::EsmeRalybnd => Verdict::Rebind,
        S::EsmeRinvmsglen
        | S::EsmeRinvcmdlen
        | S::EsmeRinvcmdid
        | S::EsmeRinvprtflg
        | S::EsmeRinvregdlvflg
        | S::EsmeRinvsrcadr
        | S::EsmeRinvdstadr
        | S::EsmeRinvsertyp
        | S::EsmeRinvesmclass
        | S::EsmeRinvsrcton
        | S::EsmeRinvsrcnpi
        | S::EsmeRinvdstton
        | S::EsmeRinvdstnpi
        | S::EsmeRinvsystyp
        | S::EsmeRinvsched
        | S::EsmeRinvexpiry
        | S::EsmeRinvdftmsgid
        | S::EsmeRxPAppn
        | S::EsmeRxRAppn
        | S::EsmeRinvtlvstream
        | S::EsmeRtlvnotallwd
        | S::EsmeRinvtlvlen
        | S::EsmeRmissingtlv
        | S::EsmeRinvtlvval
        | S::EsmeRsertypunauth
        | S::EsmeRprohibited
        | S::EsmeRsertypunavail
        | S::EsmeRsertypdenied
        | S::EsmeRinvdcs => Verdict::Permanent,
        _ => Verdict::Temporary,
    }
}

/// `ESME_RTHROTTLED (0x00000058)`-style text for logs and message errors.
pub fn describe(status: CommandStatus) -> String {
    format!("{status:?} (0x{:08X})", u32::from(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_statuses_are_throttled() {
        assert_eq!(classify(CommandStatus::EsmeRthrottled), Verdict::Throttled);
        assert_eq!(classify(CommandStatus::EsmeRmsgqful), Verdict::Throttled);
    }

    #[test]
    fn bind_state_errors_call_for_a_rebind() {
        assert_eq!(classify(CommandStatus::EsmeRinvbndsts), Verdict::Rebind);
        assert_eq!(classify(CommandStatus::EsmeRalybnd), Verdict::Rebind);
    }

    #[test]
    fn bad_addresses_are_permanent() {
        assert_eq!(classify(CommandStatus::EsmeRinvdstadr), Verdict::Permanent);
        assert_eq!(classify(CommandStatus::EsmeRinvsrcadr), Verdict::Permanent);
        assert_eq!(classify(CommandStatus::EsmeRxRAppn), Verdict::Permanent);
    }

    #[test]
    fn system_errors_and_unknown_codes_are_temporary() {
        assert_eq!(classify(CommandStatus::EsmeRsyserr), Verdict::Temporary);
        assert_eq!(classify(CommandStatus::EsmeRxTAppn), Verdict::Temporary);
        assert_eq!(
            classify(CommandStatus::from(0x0000_0400)),
            Verdict::Temporary
        );
    }

    #[test]
    fn descriptions_carry_the_hex_code() {
        assert!(describe(CommandStatus::EsmeRthrottled).contains("0x00000058"));
    }
}
