package mirrorcmp

// Answer is what one upstream answered a forwarded copy, reduced to what
// the comparison needs: the body's content is hashed as it is read and
// never kept.
type Answer struct {
	// Status is the HTTP status code; redirects are not followed, so a
	// 3xx is an answer like any other.
	Status int
	// BodyHash is the SHA-256 of the body's first MaxBody bytes (all of
	// it, for a body no longer than that).
	BodyHash [32]byte
	// BodyLen is the body's whole length, past MaxBody too.
	BodyLen int64
	// Err is set when there is no answer to compare: the connection
	// failed, the call timed out, or the body could not be read whole.
	Err error
}

// Result is the outcome of comparing the canary's answer to a copy with
// stable's. Its value is the result label of fledge_mirror_comparisons_total.
type Result string

const (
	// Same: both answered, with the same status class and, for 2xx
	// answers, the same body (as far as BodyHash and BodyLen tell).
	Same Result = "same"
	// StatusDiffers: both answered, with different status classes.
	StatusDiffers Result = "status_differs"
	// BodyDiffers: both answered 2xx, with different bodies.
	BodyDiffers Result = "body_differs"
	// Unanswered: either upstream failed to answer, so nothing was
	// compared. It is not a difference: an answer that cannot be measured
	// is neither a pass nor a fail of the canary.
	Unanswered Result = "unanswered"
)

// Compare says whether the canary answered a copy as stable did. It
// compares exactly this:
//
//   - If either answer has an Err, the result is Unanswered, whatever the
//     other says.
//   - The status class (1xx, 2xx, 3xx, 4xx, 5xx: the code divided by 100)
//     must be equal, or the result is StatusDiffers. Codes within a class
//     are alike: 200 and 201 are the same, since a canary that answers
//     201 where stable answered 200 has not failed anybody.
//   - For 2xx answers alone, BodyLen and BodyHash must both be equal, or
//     the result is BodyDiffers. Bodies of other classes are not
//     compared: error pages and redirects carry request ids, timestamps
//     and locations that differ from one answer to the next even between
//     two replicas of the same version.
//
// Headers are never compared, for the same reason. Two bodies longer than
// MaxBody that agree in their first MaxBody bytes and in their lengths
// are the Same, however they differ past MaxBody.
func Compare(canary, stable Answer) Result {
	switch {
	case canary.Err != nil || stable.Err != nil:
		return Unanswered
	case canary.Status/100 != stable.Status/100:
		return StatusDiffers
	case canary.Status/100 == 2 && (canary.BodyLen != stable.BodyLen || canary.BodyHash != stable.BodyHash):
		return BodyDiffers
	}
	return Same
}
