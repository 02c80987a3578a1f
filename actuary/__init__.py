"""The actuary's room: back-tests of candidate rulesets (`backtest`), the claim-frequency GLM
(`glm`), the gaming and safety report (`gaming`), synthetic portfolios (`synthetic`),
back-tests partitioned across machines (`partitioned`) and `glucover actuary` (`cli`). It
reads the pricing rules (pricing/) and prices with them; nothing in pricing imports it.
"""
