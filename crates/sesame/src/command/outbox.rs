//! `sesame outbox ...`: the development outbox, where texts and calls go when no gateway is
//! configured. Read a text's code; answer a call as the phone would (# approves, 0# reports
//! fraud, or let it go unanswered).

use super::{open, output};
use crate::Cli;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sesame_core::ChallengeId;
use sesame_server::service::phones;
use sesame_server::web::fmt_time;
use sesame_telephony::CallOutcome;

#[derive(Subcommand)]
pub enum OutboxCommand {
    /// List texts and calls, newest first.
    List {
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one text or call in full (a text's code, a call's words).
    Show {
        /// The number in the ID column of `sesame outbox list`.
        id: i64,
    },
    /// Answer a ringing call as the phone would.
    Answer {
        /// The call's number in the ID column of `sesame outbox list`.
        call: i64,
        /// The keys pressed: '#' approves the sign-in, '0#' reports it as fraud (which blocks
        /// requests to the user's phone until an administrator unblocks them).
        #[arg(long, value_name = "KEYS", conflicts_with_all = ["no_answer", "reject"], required_unless_present_any = ["no_answer", "reject"])]
        press: Option<String>,
        /// Let the call ring out unanswered.
        #[arg(long)]
        no_answer: bool,
        /// Reject the call (hang up without pressing a key).
        #[arg(long)]
        reject: bool,
    },
}

pub async fn run(cli: &Cli, cmd: &OutboxCommand) -> Result<()> {
    let data = open(cli, None, super::Create::Refused).await?;
    let svc = &data.services;
    match cmd {
        OutboxCommand::List { limit } => {
            let items = svc.store.outbox_list(*limit).await?;
            output(cli.json, &items, || {
                if items.is_empty() {
                    say!("The outbox is empty: no text or call has been sent through it.");
                    return;
                }
                say!(
                    "{:<5} {:<5} {:<16} {:<13} {:<20} TEXT",
                    "ID",
                    "KIND",
                    "TO",
                    "STATE",
                    "SENT"
                );
                for i in &items {
                    say!(
                        "{:<5} {:<5} {:<16} {:<13} {:<20} {}",
                        i.id,
                        i.kind,
                        i.to,
                        i.state,
                        fmt_time(i.created_at),
                        i.body
                    );
                }
            })?;
        }
        OutboxCommand::Show { id } => {
            let i = svc.store.outbox_find(*id).await?.with_context(|| {
                format!("nothing in the outbox has ID {id} (see `sesame outbox list`)")
            })?;
            output(cli.json, &i, || {
                say!("ID:        {}", i.id);
                say!(
                    "Kind:      {}",
                    if i.kind == "sms" {
                        "text message"
                    } else {
                        "call"
                    }
                );
                say!("To:        {}", i.to);
                if let Some(e) = &i.extension {
                    say!("Extension: {e}");
                }
                say!("State:     {}", i.state);
                say!("Sent:      {}", fmt_time(i.created_at));
                say!(
                    "{}:      {}",
                    if i.kind == "sms" { "Text" } else { "Says" },
                    i.body
                );
            })?;
        }
        OutboxCommand::Answer {
            call,
            press,
            no_answer,
            reject,
        } => {
            let outcome = match (press.as_deref(), no_answer, reject) {
                (Some("#"), _, _) => CallOutcome::Approved,
                (Some("0#"), _, _) => CallOutcome::Fraud,
                (Some(other), _, _) => {
                    bail!("--press takes '#' (approve) or '0#' (report fraud), not {other:?}")
                }
                (None, true, _) => CallOutcome::NotAnswered,
                (None, _, true) => CallOutcome::Rejected,
                (None, false, false) => bail!(
                    "say what the phone does: --press '#', --press '0#', --no-answer or --reject"
                ),
            };
            let item = svc.store.outbox_find(*call).await?.with_context(|| {
                format!("nothing in the outbox has ID {call} (see `sesame outbox list`)")
            })?;
            if item.kind != "call" {
                bail!("{call} is a text message, not a call");
            }
            if !svc
                .store
                .outbox_answer(item.id, outcome.as_str(), svc.now())
                .await?
            {
                bail!("call {call} has ended already ({})", item.state);
            }
            let counted =
                phones::call_ended(svc, &ChallengeId(item.reference.clone()), outcome.clone())
                    .await?;
            let what = match outcome {
                CallOutcome::Approved => "Pressed #: the sign-in is approved.",
                CallOutcome::Fraud => "Pressed 0#: reported as fraud. Requests to this user's phone are blocked until an administrator unblocks them.",
                CallOutcome::NotAnswered => "The call went unanswered.",
                _ => "The call was rejected.",
            };
            if counted {
                say!("{what}");
            } else {
                say!("The call was answered, but its sign-in had already ended (expired, replaced or cancelled): nothing changed.");
            }
        }
    }
    Ok(())
}
