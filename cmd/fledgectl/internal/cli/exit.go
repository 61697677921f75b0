package cli

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes. Every command may exit with ExitOK, ExitError, ExitTimeout
// and ExitUnavailable; wait also with ExitRolledBack and ExitAborted.
// ExitTimeout and ExitUnavailable say that retrying may help; ExitError
// that it will not until something changes (the call, the certificate,
// the token, the permission), so that a pipeline knows whether to retry.
const (
	// ExitOK: done; for wait, the revision was promoted (the Flight
	// succeeded), or nothing was in flight.
	ExitOK = 0
	// ExitError: anything else: bad usage, refused (unauthenticated, not
	// allowed, invalid, not found, precondition failed), fledge's
	// certificate refused (not for the name dialled, not signed by a
	// trusted CA, expired), or, for wait, a revision replaced or reverted
	// before it finished; for lint, errors in the files.
	ExitError = 1
	// ExitRolledBack: wait saw the revision rolled back (by analysis or
	// the progress deadline).
	ExitRolledBack = 2
	// ExitAborted: wait saw the revision aborted by someone.
	ExitAborted = 3
	// ExitTimeout: --timeout passed first.
	ExitTimeout = 4
	// ExitUnavailable: fledge could not be reached, or answered
	// UNAVAILABLE (not the leader, cannot check credentials) for longer
	// than fledgectl retries.
	ExitUnavailable = 5
)

const exitCodesHelp = `Exit codes (4 and 5: retrying may help; 1: not until something changes):
  0  done; for wait: promoted (succeeded), or nothing in flight
  1  any other error: usage, not authenticated (token refused), not allowed,
     not found, invalid, precondition failed; fledge's certificate refused
     (not for that name, or not signed by a trusted CA); for wait: the
     revision was replaced or reverted before it finished; for lint: errors
  2  wait: the revision was rolled back
  3  wait: the revision was aborted
  4  timed out (--timeout)
  5  fledge unreachable or unavailable`

// exitError ends the command with a code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// exitCode is the process's exit code for a command's error.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ExitTimeout
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.DeadlineExceeded:
			return ExitTimeout
		case codes.Unavailable:
			return ExitUnavailable
		}
	}
	return ExitError
}
