//! Codes by text message to the user's mobile phone: 6 digits, 10 minutes, once
//! (`service::phones`). Set up on My security info by typing the number and the code texted
//! to it, which proves the phone is the person's; the same number then also takes calls
//! (`voice`).

use super::{Prompt, SecondStep, Verdict};
use crate::error::Error;
use crate::service::phones::{self, CodeCheck};
use crate::service::{Origin, Services};
use crate::web::extract::{reauth_redirect, Checked, Recent};
use crate::web::templates::{PhoneAddPage, PhoneVerifyPage};
use crate::web::{page, see_other, CsrfToken};
use crate::AppState;
use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use sesame_core::method::{MethodKind, PhoneSlot};
use sesame_core::phone::PhoneNumber;
use sesame_store::{Method, SignInRecord, User};

pub struct Texts;

#[async_trait]
impl SecondStep for Texts {
    fn kind(&self) -> MethodKind {
        MethodKind::Sms
    }

    fn prompt(&self) -> Prompt {
        Prompt::Code {
            text: "We texted a 6-digit code to your phone. Enter it here.",
            sent: true,
        }
    }

    fn enrolment(&self) -> Option<(&'static str, &'static str)> {
        Some(("/security-info/add/phone", "Phone (text message or call)"))
    }

    fn option_label(&self, methods: &[Method]) -> String {
        match methods
            .iter()
            .find(|m| m.kind == MethodKind::Sms)
            .and_then(phones::number_of)
        {
            Some(n) => format!("Text {}", n.short()),
            None => "Text message".into(),
        }
    }

    async fn begin(
        &self,
        svc: &Services,
        origin: &Origin,
        _: &SignInRecord,
        user: &User,
    ) -> Result<Option<String>, Error> {
        let Some(number) = phones::method_of(svc, user, MethodKind::Sms)
            .await?
            .as_ref()
            .and_then(phones::number_of)
        else {
            return Ok(Some("There is no mobile phone number on your account any more. Use a different verification option.".into()));
        };
        Ok(
            phones::send_code(svc, origin, user, &number, phones::SIGN_IN)
                .await?
                .err(),
        )
    }

    async fn notice(
        &self,
        svc: &Services,
        user: sesame_core::UserId,
    ) -> Result<Option<String>, Error> {
        // The gateway's delivery report said the last text will not arrive.
        Ok((svc.store.last_message_status(user).await?.as_deref() == Some("failed")).then(|| {
            "The last text to your phone could not be delivered. Send a new code, or use a different verification option.".to_string()
        }))
    }

    fn malformed(&self, input: &str) -> Option<String> {
        sesame_core::phone::parse_code(input)
            .err()
            .map(str::to_string)
    }

    async fn verify(
        &self,
        svc: &Services,
        origin: &Origin,
        user: &User,
        input: &str,
    ) -> Result<Verdict, Error> {
        let Some(method) = phones::method_of(svc, user, MethodKind::Sms).await? else {
            return Ok(Verdict::Refused {
                status: StatusCode::BAD_REQUEST,
                message: "There is no mobile phone number on your account any more. Use a different verification option.".into(),
            });
        };
        let Some(number) = phones::number_of(&method) else {
            return Err(Error::internal("a stored phone number does not parse"));
        };
        match phones::check_code(svc, origin, user, &number, phones::SIGN_IN, input).await? {
            CodeCheck::Accepted => {
                svc.store.touch_method(method.id, svc.now()).await?;
                Ok(Verdict::Accepted)
            }
            CodeCheck::Refused { message, locked } => Ok(Verdict::Refused {
                status: if locked {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    StatusCode::UNAUTHORIZED
                },
                message,
            }),
        }
    }

    async fn cancel(&self, svc: &Services, _: &SignInRecord, user: &User) -> Result<(), Error> {
        // Moving to another method: the texted code stops working.
        Ok(svc.store.drop_phone_code(user.id, phones::SIGN_IN).await?)
    }

    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/security-info/add/phone", get(add_page).post(add_submit))
            .route("/security-info/add/phone/verify", post(verify_submit))
    }
}

/// The user's mobile number now, if any.
async fn current_mobile(state: &AppState, user: &User) -> Result<Option<PhoneNumber>, Error> {
    Ok(state
        .store
        .list_methods(user.id)
        .await?
        .iter()
        .find(|m| m.kind.phone_slot() == Some(PhoneSlot::Mobile))
        .and_then(phones::number_of))
}

/// Why this user may not add a number now, as the answer to give, if so:
/// - an account that has a method already needs a second step in the last few minutes (an
///   idle session alone cannot redirect the codes or calls to another phone): sign in again
///   (and come back to `path`);
/// - the policy must allow what the number is for (`may`).
pub(super) async fn refused(
    state: &AppState,
    me: &crate::web::extract::SignedIn,
    path: &str,
    may: fn(&sesame_core::policy::Allowed) -> bool,
) -> Result<Option<Response>, Error> {
    if !me.has_fresh_second_factor(state) && !state.store.list_methods(me.user.id).await?.is_empty()
    {
        return Ok(Some(reauth_redirect(path, true)));
    }
    if !may(&state.user_policy(&me.user).await?.allowed) {
        return Err(Error::forbidden(
            "Your organisation's policy does not allow this phone verification method.",
        ));
    }
    Ok(None)
}

/// A mobile number gives texts and calls: either is enough to add one.
fn mobile_allowed(a: &sesame_core::policy::Allowed) -> bool {
    a.sms || a.voice
}

fn number_form(
    csrf: &CsrfToken,
    status: StatusCode,
    number: &str,
    changing: bool,
    error: Option<&str>,
) -> Response {
    page(
        csrf,
        status,
        &PhoneAddPage {
            csrf: &csrf.token,
            error,
            number,
            changing,
        },
    )
}

async fn add_page(
    State(state): State<AppState>,
    Recent(me): Recent,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    if let Some(refused) = refused(&state, &me, "/security-info/add/phone", mobile_allowed).await? {
        return Ok(refused);
    }
    let changing = current_mobile(&state, &me.user).await?.is_some();
    Ok(number_form(&csrf, StatusCode::OK, "", changing, None))
}

/// Sends (or sends again) the code that proves the number.
async fn add_submit(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Checked { me, form, .. }: Checked<Recent>,
) -> Result<Response, Error> {
    if let Some(refused) = refused(&state, &me, "/security-info/add/phone", mobile_allowed).await? {
        return Ok(refused);
    }
    let typed = form.text("number");
    let changing = current_mobile(&state, &me.user).await?.is_some();
    let number = match PhoneNumber::parse(typed).and_then(|n| {
        n.country_allowed(&state.config.telephony.allowed_country_codes)
            .map(|_| n)
    }) {
        Ok(n) => n,
        Err(e) => {
            return Ok(number_form(
                &csrf,
                StatusCode::BAD_REQUEST,
                typed,
                changing,
                Some(&e.to_string()),
            ))
        }
    };
    let purpose = phones::enrol_purpose(PhoneSlot::Mobile);
    if let Err(message) = phones::send_code(&state, &origin, &me.user, &number, &purpose).await? {
        return Ok(number_form(
            &csrf,
            StatusCode::TOO_MANY_REQUESTS,
            typed,
            changing,
            Some(&message),
        ));
    }
    Ok(verify_form(&csrf, StatusCode::OK, &number, None))
}

fn verify_form(
    csrf: &CsrfToken,
    status: StatusCode,
    number: &PhoneNumber,
    error: Option<&str>,
) -> Response {
    page(
        csrf,
        status,
        &PhoneVerifyPage {
            csrf: &csrf.token,
            error,
            number: number.e164(),
            masked: &number.masked(),
        },
    )
}

async fn verify_submit(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Checked { me, form, .. }: Checked<Recent>,
) -> Result<Response, Error> {
    if let Some(refused) = refused(&state, &me, "/security-info/add/phone", mobile_allowed).await? {
        return Ok(refused);
    }
    // The number comes back from the page; the code is bound to the number it was texted to,
    // so a number changed in between finds no code.
    let number = PhoneNumber::from_e164(form.text("number"))
        .map_err(|_| Error::bad_request("Start again from My security info."))?;
    let purpose = phones::enrol_purpose(PhoneSlot::Mobile);
    match phones::check_code(
        &state,
        &origin,
        &me.user,
        &number,
        &purpose,
        form.text("code"),
    )
    .await?
    {
        CodeCheck::Accepted => {}
        CodeCheck::Refused { message, locked } => {
            let status = if locked {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::BAD_REQUEST
            };
            return Ok(verify_form(&csrf, status, &number, Some(&message)));
        }
    }
    phones::save(&state, &origin, &me.user, PhoneSlot::Mobile, &number, None).await?;
    Ok(see_other("/security-info?done=phone_added"))
}
