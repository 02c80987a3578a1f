"""Policy administration: what happens to a policy besides its daily pricing. Claims as a
process (`claims`, with `claim_checks`, `documents`, `diagnoses`), the policy's states
(`states`), its terms (`terms`) and the product's declared parameters (`product`)."""
