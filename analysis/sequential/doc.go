// Package sequential judges a canary against stable as evidence arrives,
// with error guarantees that hold however often it looks and however long
// a rollout runs ("anytime-valid"). It is pure: counts in, evidence and
// verdicts out; no clock, no I/O.
//
// Two questions are asked of a rate (the share of requests that failed, or
// were slower than a bound), each with its own tool:
//
//   - Is the canary worse than stable? Worse is an e-process: a
//     nonnegative supermartingale under "the canary is no worse", so by
//     Ville's inequality it reaches 1/alpha with probability at most alpha
//     at any time. The bad events of a stratum (looks at one traffic
//     split, until each side has served a few requests) are attributed,
//     conditionally on how many there were, to canary or stable: under a
//     rate ratio rho, each is the canary's with probability
//     rho*n/(rho*n+m), where n and m are the requests each served in the
//     stratum. Conditioning cancels stable's unknown rate, the traffic
//     level and incidents that hit both sides at once, and stratifying by
//     split keeps it exact when the traffic split changes (steps, cohorts,
//     sticky users): within a stratum requests are routed alike whatever
//     else happens, and the observed shares are used, never the
//     configured weights. The alternative is a mixture over ratios from
//     1.25 to 50. This is the conditional
//     construction of Lindon and Malek, "Anytime-valid inference for
//     multinomial count data" (NeurIPS 2022); Hoeffding (1963, section 6)
//     makes it exact for per-request (Bernoulli) errors too, since drawing
//     without replacement is dominated in convex order.
//   - Is the canary shown no worse than a margin? Promotion is an
//     e-process too, under "the canary is worse than stable plus the
//     margin": it bets on groups of requests, one of the side that served
//     fewer against its share of the other's, that the canary's share of
//     bad events minus stable's stays below the margin, sizing each bet
//     from what the strata before it showed (testing by betting; see
//     Promotion). It needs about as many canary requests as Wald's
//     sequential test that knew stable's rate.
//   - How much is known? Bounds gives each side's rate a confidence
//     sequence, for messages: Robbins' beta-binomial mixture (Robbins
//     1970; Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform,
//     nonparametric, nonasymptotic confidence sequences", Annals of
//     Statistics 2021), which holds uniformly over time.
//
// "Cannot tell yet" is an answer, not a failure: evidence short of both
// bounds holds the rollout, and Bounds says how much is known.
//
// Worse and Counts are kept in the Flight's status, whose CRD schema is
// generated from them: none of their fields is required there.
//
// +kubebuilder:validation:Optional
package sequential
