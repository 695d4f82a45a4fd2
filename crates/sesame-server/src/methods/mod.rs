//! The second steps after a password, one module each behind [`SecondStep`], registered in
//! the app state ([`Registry`]). The sign-in pages ask the registry what to show and whom to
//! ask; they do not know any method by name.
//!
//! Adding a method takes: a variant of `sesame_core::method::MethodKind` (with what the policy
//! allows of it, in `Allowed::permits`), one module here (its rules, its set-up pages, its
//! routes), its templates, and its migration. Out-of-band methods (a notification now, a
//! phone call later) start an approval through `service::approvals`, whose waiting page,
//! status poll and completion they share.

pub mod push;
pub mod sms;
pub mod totp;
pub mod voice;

use crate::error::Error;
use crate::service::{Origin, Services};
use crate::AppState;
use async_trait::async_trait;
use axum::http::StatusCode;
use axum::Router;
use sesame_core::method::MethodKind;
use sesame_store::{SignInRecord, User};
use std::sync::Arc;

/// How the second-step page asks for this method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// A code typed on the page: `text` says where the code comes from; `sent` when Sesame
    /// sent it (a text message), so the page offers to send a new one.
    Code { text: &'static str, sent: bool },
    /// An approval elsewhere (the phone): the page shows the number and waits.
    Approval,
}

/// What a method made of what was typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Refused; the page is shown again with `message` and `status`.
    Refused {
        status: StatusCode,
        message: String,
    },
    /// Nothing to type for this method: back to its page.
    NotHere,
}

#[async_trait]
pub trait SecondStep: Send + Sync {
    fn kind(&self) -> MethodKind;

    fn prompt(&self) -> Prompt;

    /// Where "Add method" on My security info leads to set this method up, and its label.
    fn enrolment(&self) -> Option<(&'static str, &'static str)>;

    /// The sign-in moved to this method (first, or by "Use a different verification
    /// option"): send what must be sent. `Some(message)`: nothing could be sent (a limit, a
    /// block, the gateway), and the page says why.
    async fn begin(
        &self,
        svc: &Services,
        origin: &Origin,
        rec: &SignInRecord,
        user: &User,
    ) -> Result<Option<String>, Error>;

    /// What "Use a different verification option" calls this method for this user
    /// ("Text ••78"); the kind's name by default.
    fn option_label(&self, methods: &[sesame_store::Method]) -> String {
        let _ = methods;
        self.kind().display_name().to_string()
    }

    /// What the method's page says before anything is typed (the last text could not be
    /// delivered), if anything.
    async fn notice(
        &self,
        _svc: &Services,
        _user: sesame_core::UserId,
    ) -> Result<Option<String>, Error> {
        Ok(None)
    }

    /// Why what was typed cannot be an answer at all (a code of the wrong shape), judged before
    /// anything is looked up: such input is refused the same way for everyone.
    fn malformed(&self, _input: &str) -> Option<String> {
        None
    }

    /// Judges what the person typed on the second-step page. Attempts are counted per user and
    /// method before anything is compared.
    async fn verify(
        &self,
        svc: &Services,
        origin: &Origin,
        user: &User,
        input: &str,
    ) -> Result<Verdict, Error>;

    /// The sign-in moved away from this method: nothing it sent for this sign-in may stay
    /// answerable (and nothing another sign-in sent is touched).
    async fn cancel(&self, svc: &Services, rec: &SignInRecord, user: &User) -> Result<(), Error>;

    /// The method's own pages and endpoints (its set-up), merged into the app.
    fn routes(&self) -> Router<AppState>;
}

/// The methods this server offers.
#[derive(Clone)]
pub struct Registry(Vec<Arc<dyn SecondStep>>);

impl Registry {
    /// Every method Sesame has, in the order "Add method" lists them.
    pub fn standard() -> Self {
        Registry(vec![
            Arc::new(push::Notification),
            Arc::new(totp::Codes),
            Arc::new(sms::Texts),
            Arc::new(voice::Calls(MethodKind::Voice)),
            Arc::new(voice::Calls(MethodKind::OfficeVoice)),
        ])
    }

    pub fn get(&self, kind: MethodKind) -> Option<&dyn SecondStep> {
        self.0.iter().find(|m| m.kind() == kind).map(|m| &**m)
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn SecondStep> {
        self.0.iter().map(|m| &**m)
    }

    pub fn routes(&self) -> Router<AppState> {
        self.iter().fold(Router::new(), |r, m| r.merge(m.routes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_kind_has_exactly_one_module() {
        let r = Registry::standard();
        for k in MethodKind::ALL {
            assert_eq!(r.iter().filter(|m| m.kind() == k).count(), 1, "{k}");
            assert!(r.get(k).is_some());
        }
    }
}
