//! Risk assessment: a score from what a Decision asks, mapped to a level, with the reasons
//! written out so that an approver can see why.
//!
//! The score adds up five contributions (weights below); the level is read from the total:
//! 70 and above is Critical, 45 High, 25 Medium, below that Low.
//!
//! | factor | contribution |
//! |---|---|
//! | criticality | Critical 40, High 25, Normal 10, Info 0 |
//! | action type | deletes data 30; deploys, migrates, spends or changes budgets 20; restarts or reconfigures 15; analyses or reports 10; messages 5; any other 10 |
//! | estimated duration | over 4 hours 20, over 2 hours 15, over 1 hour 10, over 30 minutes 5 |
//! | priority | Urgent 15 (rushed work), High 10, Medium 5, Low 0 |
//! | source | an automated agent or bot 10, unknown 5, a named person or system 0 |

use crate::api::RiskLevel;
use crate::api::decision::{Criticality, DecisionSpec, Priority, RiskAssessment};

pub const CRITICAL_FROM: u32 = 70;
pub const HIGH_FROM: u32 = 45;
pub const MEDIUM_FROM: u32 = 25;

/// Scores a request. Pure: the same spec always gets the same assessment.
pub fn assess(spec: &DecisionSpec) -> RiskAssessment {
    let mut score = 0;
    let mut reasons = Vec::new();
    let mut add = |points: u32, why: String| {
        if points > 0 {
            score += points;
            reasons.push(format!("{why} (+{points})"));
        }
    };

    let points = match spec.criticality {
        Criticality::Critical => 40,
        Criticality::High => 25,
        Criticality::Normal => 10,
        Criticality::Info => 0,
    };
    add(points, format!("criticality {}", spec.criticality));

    let (points, what) = action_weight(&spec.action_type);
    add(points, format!("action {} {what}", spec.action_type));

    if let Some(minutes) = spec.estimated_duration_minutes {
        let points = match minutes {
            m if m > 240 => 20,
            m if m > 120 => 15,
            m if m > 60 => 10,
            m if m > 30 => 5,
            _ => 0,
        };
        add(points, format!("estimated to take {minutes} minutes"));
    }

    if let Some(priority) = spec.priority {
        let (points, why) = match priority {
            Priority::Urgent => (15, ": rushed work is riskier"),
            Priority::High => (10, ""),
            Priority::Medium => (5, ""),
            Priority::Low => (0, ""),
        };
        add(points, format!("priority {priority}{why}"));
    }

    match spec.source.as_deref() {
        None | Some("") => add(5, "no source given".to_owned()),
        Some(source) if is_automated(source) => {
            add(10, format!("requested by an automated agent ({source})"))
        }
        Some(_) => {}
    }

    RiskAssessment {
        level: level_for(score),
        score,
        reasons,
    }
}

/// The level a score falls in.
pub fn level_for(score: u32) -> RiskLevel {
    match score {
        s if s >= CRITICAL_FROM => RiskLevel::Critical,
        s if s >= HIGH_FROM => RiskLevel::High,
        s if s >= MEDIUM_FROM => RiskLevel::Medium,
        _ => RiskLevel::Low,
    }
}

fn action_weight(action_type: &str) -> (u32, &'static str) {
    let has = |words: &[&str]| words.iter().any(|w| action_type.contains(w));
    if has(&["delete", "drop", "purge", "destroy", "wipe"]) {
        (30, "deletes data")
    } else if has(&[
        "deploy", "migrat", "release", "budget", "spend", "payment", "rollback",
    ]) {
        (20, "changes production or spends money")
    } else if has(&["restart", "config", "role", "scale", "permission"]) {
        (15, "changes how a system runs")
    } else if has(&["analysis", "analyse", "analyze", "report"]) {
        (10, "reads and processes data")
    } else if has(&[
        "email",
        "mail",
        "follow_up",
        "message",
        "notif",
        "status_update",
    ]) {
        (5, "sends a message")
    } else {
        (10, "is of a kind without a known weight")
    }
}

fn is_automated(source: &str) -> bool {
    let s = source.to_ascii_lowercase();
    ["agent", "bot", "ai/", "llm"].iter().any(|w| s.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn spec(action: &str, criticality: Criticality) -> DecisionSpec {
        DecisionSpec::example(action, criticality)
    }

    #[test]
    fn a_critical_production_deploy_by_an_agent_is_critical() {
        let mut s = spec("deploy", Criticality::Critical);
        s.priority = Some(Priority::High);
        s.estimated_duration_minutes = Some(15);
        s.source = Some("agents/release-bot".into());
        let risk = assess(&s);
        assert_eq!(risk.score, 40 + 20 + 10 + 10);
        assert_eq!(risk.level, RiskLevel::Critical);
        assert_eq!(
            risk.reasons,
            [
                "criticality Critical (+40)",
                "action deploy changes production or spends money (+20)",
                "priority High (+10)",
                "requested by an automated agent (agents/release-bot) (+10)",
            ]
        );
    }

    #[test]
    fn each_factor_moves_the_score() {
        let base = assess(&spec("follow_up", Criticality::Normal));
        assert_eq!(base.score, 10 + 5 + 5);
        assert_eq!(base.level, RiskLevel::Low);

        let mut longer = spec("follow_up", Criticality::Normal);
        longer.estimated_duration_minutes = Some(180);
        assert_eq!(assess(&longer).score, base.score + 15);

        let mut urgent = spec("follow_up", Criticality::Normal);
        urgent.priority = Some(Priority::Urgent);
        assert_eq!(assess(&urgent).score, base.score + 15);

        let mut by_person = spec("follow_up", Criticality::Normal);
        by_person.source = Some("users/jane".into());
        assert_eq!(assess(&by_person).score, base.score - 5);

        assert_eq!(
            assess(&spec("delete_data", Criticality::Normal)).score,
            base.score + 25
        );
    }

    #[test]
    fn levels_have_the_documented_thresholds() {
        assert_eq!(level_for(0), RiskLevel::Low);
        assert_eq!(level_for(24), RiskLevel::Low);
        assert_eq!(level_for(25), RiskLevel::Medium);
        assert_eq!(level_for(44), RiskLevel::Medium);
        assert_eq!(level_for(45), RiskLevel::High);
        assert_eq!(level_for(69), RiskLevel::High);
        assert_eq!(level_for(70), RiskLevel::Critical);
    }

    #[test]
    fn a_long_data_analysis_is_high() {
        let mut s = spec("data_analysis", Criticality::Normal);
        s.estimated_duration_minutes = Some(180);
        s.source = Some("agents/analyst".into());
        assert_eq!(assess(&s).level, RiskLevel::High);
    }
}
