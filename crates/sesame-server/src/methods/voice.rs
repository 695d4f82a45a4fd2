//! Phone calls: Sesame calls the user's mobile (or office) phone; # approves, 0# reports
//! fraud. A call is an out-of-band approval on the voice channel (`service::phones`), so the
//! waiting page, its status poll and completion are the notification's.

use super::{Prompt, SecondStep, Verdict};
use crate::error::Error;
use crate::service::{approvals, phones, Origin, Services};
use crate::AppState;
use async_trait::async_trait;
use axum::Router;
use sesame_core::method::MethodKind;
use sesame_store::{Method, SignInRecord, User};

/// Calls to the phone of this kind (`Voice`: the mobile; `OfficeVoice`: the office phone).
pub struct Calls(pub MethodKind);

#[async_trait]
impl SecondStep for Calls {
    fn kind(&self) -> MethodKind {
        self.0
    }

    fn prompt(&self) -> Prompt {
        Prompt::Approval
    }

    fn enrolment(&self) -> Option<(&'static str, &'static str)> {
        // A mobile number is added with its texted code (`sms`), and takes calls too.
        None
    }

    fn option_label(&self, methods: &[Method]) -> String {
        let number = methods
            .iter()
            .find(|m| m.kind == self.0)
            .and_then(phones::number_of);
        match (self.0, number) {
            (MethodKind::OfficeVoice, _) => "Call office phone".into(),
            (_, Some(n)) => format!("Call {}", n.short()),
            _ => "Call my phone".into(),
        }
    }

    async fn begin(
        &self,
        svc: &Services,
        origin: &Origin,
        rec: &SignInRecord,
        user: &User,
    ) -> Result<Option<String>, Error> {
        let Some(method) = phones::method_of(svc, user, self.0).await? else {
            return Ok(Some("There is no phone number for calls on your account any more. Use a different verification option.".into()));
        };
        phones::place_call(svc, origin, rec, user, &method).await
    }

    async fn verify(&self, _: &Services, _: &Origin, _: &User, _: &str) -> Result<Verdict, Error> {
        // Answered with a key on the call, never typed on the page.
        Ok(Verdict::NotHere)
    }

    async fn cancel(&self, svc: &Services, rec: &SignInRecord, user: &User) -> Result<(), Error> {
        Ok(approvals::cancel_own(svc, rec, user).await?)
    }

    fn routes(&self) -> Router<AppState> {
        Router::new()
    }
}
