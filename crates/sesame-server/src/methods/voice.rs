//! Phone calls: Sesame calls the user's mobile (or office) phone; # approves, 0# reports
//! fraud. A call is an out-of-band approval on the voice channel (`service::phones`), so the
//! waiting page, its status poll and completion are the notification's.

use super::sms::refused;
use super::{Prompt, SecondStep, Verdict};
use crate::error::Error;
use crate::service::phones::EnrolCall;
use crate::service::{approvals, phones, Origin, Services};
use crate::web::extract::{Checked, Recent};
use crate::web::templates::{OfficeAddPage, OfficeCallPage};
use crate::web::{page, see_other, CsrfToken};
use crate::AppState;
use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use sesame_core::method::{MethodKind, PhoneSlot};
use sesame_core::phone::{self, PhoneNumber};
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
        match self.0 {
            MethodKind::OfficeVoice => Some(("/security-info/add/office", "Office phone (call)")),
            // A mobile number is added with its texted code (`sms`), and takes calls too.
            _ => None,
        }
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
        match self.0 {
            MethodKind::OfficeVoice => Router::new()
                .route(
                    "/security-info/add/office",
                    get(office_page).post(office_call),
                )
                .route("/security-info/add/office/confirm", post(office_confirm)),
            _ => Router::new(),
        }
    }
}

const OFFICE_PATH: &str = "/security-info/add/office";

fn voice_allowed(a: &sesame_core::policy::Allowed) -> bool {
    a.voice
}

async fn has_office(state: &AppState, user: &User) -> Result<bool, Error> {
    Ok(phones::method_of(state, user, MethodKind::OfficeVoice)
        .await?
        .is_some())
}

fn office_form(
    csrf: &CsrfToken,
    status: StatusCode,
    number: &str,
    extension: &str,
    changing: bool,
    error: Option<&str>,
) -> Response {
    page(
        csrf,
        status,
        &OfficeAddPage {
            csrf: &csrf.token,
            error,
            number,
            extension,
            changing,
        },
    )
}

async fn office_page(
    State(state): State<AppState>,
    Recent(me): Recent,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    if let Some(refused) = refused(&state, &me, OFFICE_PATH, voice_allowed).await? {
        return Ok(refused);
    }
    let changing = has_office(&state, &me.user).await?;
    Ok(office_form(&csrf, StatusCode::OK, "", "", changing, None))
}

/// The number and extension typed (or carried back by the page), checked.
fn typed(
    form: &crate::web::CsrfForm,
    allowed: &[u16],
) -> Result<(PhoneNumber, Option<String>), String> {
    let number = PhoneNumber::parse(form.text("number"))
        .and_then(|n| n.country_allowed(allowed).map(|_| n))
        .map_err(|e| e.to_string())?;
    let extension = phone::parse_extension(form.text("extension")).map_err(|e| e.to_string())?;
    Ok((number, extension))
}

/// Calls the office phone to prove it (again, with "Call again").
async fn office_call(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Checked { me, form, .. }: Checked<Recent>,
) -> Result<Response, Error> {
    if let Some(refused) = refused(&state, &me, OFFICE_PATH, voice_allowed).await? {
        return Ok(refused);
    }
    let changing = has_office(&state, &me.user).await?;
    let again = |status, error: &str| {
        office_form(
            &csrf,
            status,
            form.text("number"),
            form.text("extension"),
            changing,
            Some(error),
        )
    };
    let (number, extension) = match typed(&form, &state.config.telephony.allowed_country_codes) {
        Ok(v) => v,
        Err(e) => return Ok(again(StatusCode::BAD_REQUEST, &e)),
    };
    // The set-up's own token: the call's request is found by its hash, like a sign-in's.
    let request = crate::token::random();
    let to = phones::CallTo {
        kind: MethodKind::OfficeVoice,
        number: &number,
        extension: extension.as_deref(),
        request: crate::token::hash(&request),
        enrol: true,
    };
    if let Err(message) = phones::call(&state, &origin, &me.user, to).await? {
        return Ok(again(StatusCode::TOO_MANY_REQUESTS, &message));
    }
    Ok(call_page(
        &csrf,
        StatusCode::OK,
        &number,
        extension.as_deref(),
        &request,
        None,
    ))
}

fn call_page(
    csrf: &CsrfToken,
    status: StatusCode,
    number: &PhoneNumber,
    extension: Option<&str>,
    request: &str,
    error: Option<&str>,
) -> Response {
    page(
        csrf,
        status,
        &OfficeCallPage {
            csrf: &csrf.token,
            error,
            number: number.e164(),
            extension,
            masked: &number.masked(),
            request,
        },
    )
}

/// "Continue": saves the office phone once its call was answered with #.
async fn office_confirm(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Checked { me, form, .. }: Checked<Recent>,
) -> Result<Response, Error> {
    if let Some(refused) = refused(&state, &me, OFFICE_PATH, voice_allowed).await? {
        return Ok(refused);
    }
    let start_again =
        || Error::bad_request("This set-up has ended. Start again from My security info.");
    let (number, extension) =
        typed(&form, &state.config.telephony.allowed_country_codes).map_err(|_| start_again())?;
    let request = form.text("request");
    let shown = |error: &str, status| {
        call_page(
            &csrf,
            status,
            &number,
            extension.as_deref(),
            request,
            Some(error),
        )
    };
    match phones::take_enrol_call(&state, &me.user, &crate::token::hash(request), &number).await? {
        EnrolCall::Confirmed => {}
        EnrolCall::Waiting => {
            return Ok(shown(
                "The call has not been answered with # yet. Answer it and press #, then choose Continue.",
                StatusCode::CONFLICT,
            ))
        }
        EnrolCall::Over(why) => return Ok(shown(why, StatusCode::CONFLICT)),
        EnrolCall::NoCall => return Err(start_again()),
    }
    phones::save(
        &state,
        &origin,
        &me.user,
        PhoneSlot::Office,
        &number,
        extension.as_deref(),
    )
    .await?;
    Ok(see_other("/security-info?done=office_added"))
}
