//! The mixed-precision search in the studio, as data: the Search tab's settings, the plans the
//! running search has evaluated so far (its front is re-marked as they arrive), the finished
//! report, and the workspace's side of it (start, events, "use this plan"). No egui, no
//! threads: the job runs in `plan_jobs`.

use super::workspace::{Effect, Workspace};
use crate::analysis::search::{
    Candidate, Objective, SearchConfig, SearchEvent, SearchReport, mark_front, with_precisions,
};
use std::sync::Arc;
use std::time::Duration;

/// The Search tab's form.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SearchSettings {
    pub max_drop_pp: f64,
    pub objective: Objective,
    pub budget_s: f64,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            max_drop_pp: 0.3,
            objective: Objective::Size,
            budget_s: 60.0,
        }
    }
}

impl SearchSettings {
    /// The library configuration: the workspace's sample counts, its excluded layers pinned
    /// at fp32 (the search reads them from the plan).
    pub fn config(&self, calib_samples: usize, eval_samples: usize) -> SearchConfig {
        SearchConfig {
            max_drop_pp: self.max_drop_pp,
            objective: self.objective,
            budget: Duration::from_secs_f64(self.budget_s.clamp(1.0, 86_400.0)),
            calib_samples,
            eval_samples,
            ..SearchConfig::default()
        }
    }
}

/// The search on screen.
#[derive(Clone, Debug, Default)]
pub struct SearchView {
    pub settings: Option<SearchSettings>,
    pub float_accuracy: Option<f64>,
    pub int8: Option<Candidate>,
    /// Every evaluated plan so far, the front marked.
    pub tried: Vec<Candidate>,
    pub report: Option<Arc<SearchReport>>,
    pub error: Option<String>,
}

impl Workspace {
    /// Starts a search from the current plan (its observers; excluded layers stay fp32).
    pub fn start_search(&mut self, s: SearchSettings) -> Vec<Effect> {
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        self.search = SearchView {
            settings: Some(s),
            ..SearchView::default()
        };
        vec![Effect::Search {
            plan: plan.clone(),
            settings: s,
            resume: None,
        }]
    }

    /// Why the last search cannot be resumed from the current plan with these settings, if
    /// it cannot (the Resume button says it).
    pub fn resume_blocker(&self, s: &SearchSettings) -> Option<String> {
        let Some(r) = &self.search.report else {
            return Some("no search has ended yet".into());
        };
        // The resumed search runs on the search's own base plan, so only the image counts
        // can have changed under it.
        let cfg = s.config(self.calib_samples, self.eval_samples);
        if !r.memory.fits_config(&cfg) {
            return Some(
                "the calibration or evaluation image counts changed since the search: run a new one"
                    .into(),
            );
        }
        None
    }

    /// Continues the last search (its plans kept) with new settings.
    pub fn resume_search(&mut self, s: SearchSettings) -> Result<Vec<Effect>, String> {
        if let Some(why) = self.resume_blocker(&s) {
            return Err(format!("cannot resume the search: {why}"));
        }
        let Some(r) = self.search.report.clone() else {
            return Err("cannot resume the search: no search has ended yet".into());
        };
        let Some(base) = r.memory.base().cloned() else {
            return Err("cannot resume the search: it kept no base plan".into());
        };
        self.search.settings = Some(s);
        self.search.report = None;
        self.search.error = None;
        Ok(vec![Effect::Search {
            plan: base,
            settings: s,
            resume: Some(r.memory.clone()),
        }])
    }

    /// A search event.
    pub fn on_search_event(&mut self, e: SearchEvent) {
        match e {
            SearchEvent::Baseline {
                float_accuracy,
                int8,
            } => {
                self.search.float_accuracy = Some(float_accuracy);
                self.search.tried = vec![int8.clone()];
                self.search.int8 = Some(int8);
            }
            SearchEvent::Resumed {
                float_accuracy,
                tried,
            } => {
                self.search.float_accuracy = Some(float_accuracy);
                self.search.int8 = tried.first().cloned();
                self.search.tried = tried;
            }
            SearchEvent::Tried { candidate, .. } => {
                self.search.tried.push(candidate);
            }
        }
        mark_front(&mut self.search.tried);
    }

    /// The search ended.
    pub fn on_search_done(&mut self, r: SearchReport) {
        self.search.tried = r.tried.clone();
        self.search.report = Some(Arc::new(r));
    }

    /// Makes evaluated plan `i` the current plan (its precisions on the current plan's other
    /// settings); it is then evaluated like any edit.
    pub fn use_candidate(&mut self, i: usize) -> Result<Vec<Effect>, String> {
        let c = self
            .search
            .tried
            .get(i)
            .ok_or("that plan is no longer in the search results")?;
        let plan = self.plan.as_ref().ok_or("no plan is open")?;
        if let Some((name, _)) = c.layers.iter().find(|(n, _)| plan.layer(n).is_none()) {
            return Err(format!("the plan has no layer '{name}'"));
        }
        let p = with_precisions(plan, &c.layers);
        Ok(self.set_plan(p))
    }
}
