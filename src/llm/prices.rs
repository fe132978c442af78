//! What a call cost: the provider's own figure when it gives one, else its tokens times the
//! price table (`prices.toml`, embedded, under the project's `[llm.prices]`), else unknown.

use std::collections::BTreeMap;

use crate::config::llm::Price;
use crate::states::CostSource;

use super::wire::Completion;

const SHIPPED: &str = include_str!("prices.toml");

#[derive(Debug, Clone)]
pub struct Prices(BTreeMap<String, Price>);

impl Prices {
    /// The shipped table with the project's prices on top.
    pub fn with(project: &BTreeMap<String, Price>) -> Prices {
        let mut table: BTreeMap<String, Price> =
            toml::from_str(SHIPPED).expect("the shipped price table parses");
        table.extend(project.iter().map(|(k, v)| (k.clone(), *v)));
        Prices(table)
    }

    /// The price of `model`: its own entry, or the longest entry its name starts with.
    pub fn of(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.0.get(model) {
            return Some(*p);
        }
        self.0
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    pub fn cost(&self, model: &str, c: &Completion) -> (Option<f64>, CostSource) {
        if let Some(cost) = c.cost_usd {
            return (Some(cost), CostSource::Provider);
        }
        match self.of(model) {
            Some(p) => {
                let fresh = c.input_tokens.saturating_sub(c.cached_tokens) as f64;
                let cached = c.cached_tokens as f64;
                let usd = (fresh * p.input
                    + cached * p.cached.unwrap_or(p.input)
                    + c.output_tokens as f64 * p.output)
                    / 1_000_000.0;
                (Some(usd), CostSource::PriceTable)
            }
            None => (None, CostSource::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(input: u64, cached: u64, output: u64) -> Completion {
        Completion {
            input_tokens: input,
            cached_tokens: cached,
            output_tokens: output,
            ..Default::default()
        }
    }

    #[test]
    fn costs_come_from_the_provider_the_table_or_nowhere() {
        let prices = Prices::with(&BTreeMap::new());
        // 1M fresh input at 0.40, 1M cached at 0.10, 1M output at 1.60.
        let (usd, source) =
            prices.cost("gpt-4.1-mini", &completion(2_000_000, 1_000_000, 1_000_000));
        assert_eq!(source, CostSource::PriceTable);
        assert!((usd.unwrap() - 2.10).abs() < 1e-9, "{usd:?}");
        // A dated name takes the longest matching entry: gpt-4.1-mini-2025, not gpt-4.1.
        assert_eq!(prices.of("gpt-4.1-mini-2025-04-14").unwrap().input, 0.40);
        assert_eq!(prices.of("claude-sonnet-4-20250514").unwrap().output, 15.0);
        assert_eq!(
            prices.cost("my-local-model", &completion(10, 0, 10)),
            (None, CostSource::Unknown)
        );
        let reported = Completion {
            cost_usd: Some(0.5),
            ..completion(10, 0, 10)
        };
        assert_eq!(
            prices.cost("gpt-4o", &reported),
            (Some(0.5), CostSource::Provider)
        );
    }

    #[test]
    fn the_projects_prices_win() {
        let mine = BTreeMap::from([(
            "my-local-model".to_string(),
            Price {
                input: 1.0,
                output: 2.0,
                cached: None,
            },
        )]);
        let prices = Prices::with(&mine);
        let (usd, _) = prices.cost("my-local-model", &completion(1_000_000, 500_000, 0));
        assert_eq!(
            usd,
            Some(1.0),
            "cached input at the input price when none is given"
        );
    }
}
