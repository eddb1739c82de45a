//! `[[references]]`: endpoints that are not Last.fm, each with a unique name, an anonymous
//! http(s) URL, and a timeout shorter than its interval (README.md, Configuration reference).

use std::collections::BTreeSet;
use std::ops::Range;

use toml::Spanned;
use url::Url;

use crate::config::defaults;
use crate::config::file::ReferenceFile;
use crate::config::model::Reference;
use crate::config::parse;

use super::Validator;

impl Validator<'_> {
    /// Every `[[references]]` entry that validates; none is required.
    pub(super) fn references(&mut self, files: Vec<Spanned<ReferenceFile>>) -> Vec<Reference> {
        let mut seen = BTreeSet::new();
        let mut references = Vec::new();
        for (index, file) in files.into_iter().enumerate() {
            let span = file.span();
            let file = file.into_inner();
            let mut ctx = format!("references[{index}]");
            let name = self.reference_name(file.name.as_ref(), span.clone(), &mut ctx, &mut seen);
            let url = self.reference_url(file.url.as_ref(), span, &ctx);
            let interval = self
                .duration(file.interval.as_ref(), &ctx, "interval", parse::PERIOD)
                .unwrap_or(defaults::REFERENCE_INTERVAL);
            let timeout = self
                .duration(file.timeout.as_ref(), &ctx, "timeout", parse::TIMEOUT)
                .unwrap_or(defaults::REFERENCE_TIMEOUT);
            if timeout >= interval {
                let at = file.timeout.as_ref().or(file.interval.as_ref());
                self.problem(
                    at.map(Spanned::span),
                    &ctx,
                    "timeout",
                    format!(
                        "{} is not shorter than the interval ({}); lower the timeout or check less often",
                        humantime::format_duration(timeout),
                        humantime::format_duration(interval)
                    ),
                );
            }
            if let (Some(name), Some(url)) = (name, url) {
                references.push(Reference {
                    name,
                    url,
                    interval,
                    timeout,
                });
            }
        }
        references
    }

    /// The `reference` label, unique among references; a valid name becomes the context
    /// (`ctx`) of the entry's later problems.
    fn reference_name(
        &mut self,
        name: Option<&Spanned<String>>,
        span: Range<usize>,
        ctx: &mut String,
        seen: &mut BTreeSet<String>,
    ) -> Option<String> {
        match name {
            Some(name) if parse::is_target_name(name.get_ref()) => {
                *ctx = format!("reference {:?}", name.get_ref());
                if !seen.insert(name.get_ref().clone()) {
                    self.problem(
                        Some(name.span()),
                        ctx,
                        "name",
                        "the name is used by another reference; reference names must be unique"
                            .to_owned(),
                    );
                }
                Some(name.get_ref().clone())
            }
            Some(name) => {
                self.problem(
                    Some(name.span()),
                    ctx,
                    "name",
                    format!(
                        "{:?} is not a valid name: use [a-z0-9_-], it becomes the `reference` label",
                        name.get_ref()
                    ),
                );
                None
            }
            None => {
                self.problem(
                    Some(span),
                    ctx,
                    "name",
                    "missing; every reference needs a name made of [a-z0-9_-]".to_owned(),
                );
                None
            }
        }
    }

    fn reference_url(
        &mut self,
        value: Option<&Spanned<String>>,
        span: Range<usize>,
        ctx: &str,
    ) -> Option<Url> {
        let Some(value) = value else {
            self.problem(
                Some(span),
                ctx,
                "url",
                "missing; e.g. url = \"http://192.168.1.1/\" (the gateway) or a large public site"
                    .to_owned(),
            );
            return None;
        };
        parse::reference_url(value.get_ref())
            .map_err(|message| self.problem(Some(value.span()), ctx, "url", message))
            .ok()
    }
}
