//! AlterUserScramCredentials and DescribeUserScramCredentials: SCRAM users managed from admin
//! clients (`kafka-configs --alter --add-config 'SCRAM-SHA-256=[password=...]'`, confluent-kafka's
//! `alter_user_scram_credentials`). Changes are durable before the answer.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use crate::acl::{Operation, Requester, Resource};
use crate::auth::credentials::{
    validate_name, ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS,
};

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A user's error in an alter request.
type Refusal = (ResponseError, String);

pub(crate) fn alter(
    broker: &Broker,
    who: &Requester,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    if !broker.authorize(who, Operation::Alter, Resource::cluster()) {
        let users: std::collections::BTreeSet<String> = request
            .deletions
            .iter()
            .map(|d| d.name.to_string())
            .chain(request.upsertions.iter().map(|u| u.name.to_string()))
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(
            users
                .iter()
                .map(|user| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(s(user))
                        .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                        .with_error_message(Some(s("Cluster authorization failed.")))
                })
                .collect(),
        );
    }
    let store = &broker.credentials;
    // Every change of one user is accepted or refused together.
    let mut per_user: BTreeMap<String, Result<Vec<Change>, Refusal>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut add = |user: String, change: Result<Change, Refusal>| {
        let entry = per_user
            .entry(user.clone())
            .or_insert_with(|| Ok(Vec::new()));
        let change = change.and_then(|c| {
            if seen.insert((user.clone(), c.mechanism())) {
                Ok(c)
            } else {
                Err((
                    ResponseError::DuplicateResource,
                    "a user's mechanism may appear once per request".to_string(),
                ))
            }
        });
        match (entry.as_mut(), change) {
            (Ok(list), Ok(c)) => list.push(c),
            (Ok(_), Err(refusal)) => *entry = Err(refusal),
            (Err(_), _) => {}
        }
    };
    for deletion in request.deletions {
        let user = deletion.name.to_string();
        let change = match ScramMechanism::from_wire_type(deletion.mechanism) {
            None => Err(unsupported(deletion.mechanism)),
            Some(m) if store.get(&user, m).is_none() => Err((
                ResponseError::ResourceNotFound,
                format!("no {} credential for this user", m.name()),
            )),
            Some(m) => Ok(Change::Delete(m)),
        };
        add(user, change);
    }
    for upsertion in request.upsertions {
        let user = upsertion.name.to_string();
        let change = match ScramMechanism::from_wire_type(upsertion.mechanism) {
            None => Err(unsupported(upsertion.mechanism)),
            Some(m) => {
                if let Err(e) = validate_name(&user) {
                    Err((ResponseError::UnacceptableCredential, e.to_string()))
                } else if !(i64::from(MIN_ITERATIONS)..=i64::from(MAX_ITERATIONS))
                    .contains(&i64::from(upsertion.iterations))
                {
                    Err((
                        ResponseError::UnacceptableCredential,
                        format!("iterations must be within [{MIN_ITERATIONS}, {MAX_ITERATIONS}]"),
                    ))
                } else if upsertion.salted_password.len() != m.key_len()
                    || upsertion.salt.is_empty()
                {
                    Err((
                        ResponseError::UnacceptableCredential,
                        "salt is empty or the salted password has the wrong length".to_string(),
                    ))
                } else {
                    Ok(Change::Upsert(
                        m,
                        ScramCredential::from_salted_password(
                            m,
                            &upsertion.salted_password,
                            upsertion.salt.to_vec(),
                            upsertion.iterations as u32,
                        ),
                    ))
                }
            }
        };
        add(user, change);
    }
    let mut deletions = Vec::new();
    let mut upsertions = Vec::new();
    for (user, changes) in &per_user {
        if let Ok(changes) = changes {
            for change in changes {
                match change {
                    Change::Delete(m) => deletions.push((user.clone(), *m)),
                    Change::Upsert(m, c) => upsertions.push((user.clone(), *m, c.clone())),
                }
            }
        }
    }
    let stored = if deletions.is_empty() && upsertions.is_empty() {
        Ok(())
    } else {
        store.apply(&deletions, upsertions).map_err(|e| {
            tracing::error!("AlterUserScramCredentials: {e}");
            e.to_string()
        })
    };
    let results = per_user
        .into_iter()
        .map(|(user, outcome)| {
            let result = AlterUserScramCredentialsResult::default().with_user(s(&user));
            match (outcome, &stored) {
                (Err((code, message)), _) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(s(&message))),
                (Ok(_), Err(message)) => result
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(Some(s(message))),
                (Ok(_), Ok(())) => {
                    tracing::info!(user = %user.escape_default(), "SCRAM credentials altered");
                    result.with_error_code(0)
                }
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

enum Change {
    Delete(ScramMechanism),
    Upsert(ScramMechanism, ScramCredential),
}

impl Change {
    fn mechanism(&self) -> ScramMechanism {
        match self {
            Change::Delete(m) | Change::Upsert(m, _) => *m,
        }
    }
}

fn unsupported(mechanism: i8) -> Refusal {
    (
        ResponseError::UnsupportedSaslMechanism,
        format!("unknown SCRAM mechanism {mechanism}"),
    )
}

pub(crate) fn describe(
    broker: &Broker,
    who: &Requester,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !broker.authorize(who, Operation::Describe, Resource::cluster()) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(s("Cluster authorization failed.")));
    }
    let all = broker.credentials.list();
    let info = |mechs: &[(ScramMechanism, u32)]| -> Vec<CredentialInfo> {
        mechs
            .iter()
            .map(|(m, iterations)| {
                CredentialInfo::default()
                    .with_mechanism(m.wire_type())
                    .with_iterations(*iterations as i32)
            })
            .collect()
    };
    let results = match request.users.filter(|u| !u.is_empty()) {
        None => all
            .iter()
            .map(|(user, mechs)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(s(user))
                    .with_credential_infos(info(mechs))
            })
            .collect(),
        Some(users) => {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for u in &users {
                *counts.entry(u.name.to_string()).or_default() += 1;
            }
            counts
                .into_iter()
                .map(|(user, count)| {
                    let result = DescribeUserScramCredentialsResult::default().with_user(s(&user));
                    if count > 1 {
                        return result
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(s("user named more than once")));
                    }
                    match all.iter().find(|(u, _)| *u == user) {
                        Some((_, mechs)) => result.with_credential_infos(info(mechs)),
                        None => result
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(Some(s(
                                "attempt to describe a user credential that does not exist",
                            ))),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
