package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestWaiterJudge(t *testing.T) {
	const (
		progressing = rolloutpb.Phase_PHASE_PROGRESSING
		promoting   = rolloutpb.Phase_PHASE_PROMOTING
		succeeded   = rolloutpb.Phase_PHASE_SUCCEEDED
		idle        = rolloutpb.Phase_PHASE_IDLE
		rolledBack  = rolloutpb.Phase_PHASE_ROLLED_BACK
		aborted     = rolloutpb.Phase_PHASE_ABORTED
	)
	type state struct {
		phase                    rolloutpb.Phase
		stable, canary, rejected string
	}
	tests := []struct {
		name     string
		revision string
		states   []state // what wait sees, in order
		// After the last state.
		wantDone bool
		wantCode int
	}{
		{"without a revision, a Succeeded Flight is done", "", []state{{succeeded, "a", "a", ""}}, true, ExitOK},
		{"without a revision, an Idle Flight is done", "", []state{{idle, "a", "", ""}}, true, ExitOK},
		{"without a revision, a rolled back Flight exits 2", "", []state{{rolledBack, "a", "b", "b"}}, true, ExitRolledBack},
		{"without a revision, an aborted Flight exits 3", "", []state{{aborted, "a", "b", "b"}}, true, ExitAborted},
		{"without a revision, a canary in flight is waited for", "", []state{{progressing, "a", "b", ""}, {promoting, "a", "b", ""}}, false, 0},
		{"a Succeeded of an older revision does not count", "c", []state{{succeeded, "b", "b", ""}}, false, 0},
		{"the revision waited for, promoted, exits 0", "c", []state{{succeeded, "b", "b", ""}, {progressing, "b", "c", ""}, {succeeded, "c", "c", ""}}, true, ExitOK},
		{"the revision waited for, rolled back, exits 2", "c", []state{{progressing, "b", "c", ""}, {rolledBack, "b", "c", "c"}}, true, ExitRolledBack},
		{"the revision waited for, aborted, exits 3", "c", []state{{aborted, "b", "c", "c"}}, true, ExitAborted},
		{"the revision waited for, rejected and already replaced, exits 2", "c", []state{{progressing, "b", "d", "c"}}, true, ExitRolledBack},
		{"the revision waited for, replaced while in flight, is an error", "c", []state{{progressing, "b", "c", ""}, {progressing, "b", "d", ""}}, true, ExitError},
		{"the revision waited for, reverted, is an error", "c", []state{{progressing, "b", "c", ""}, {idle, "b", "c", ""}}, true, ExitError},
		{"the revision waited for is already the stable one", "b", []state{{succeeded, "b", "b", ""}}, true, ExitOK},
		{"the revision waited for, promoted and then followed by another, still counts", "c", []state{{progressing, "b", "c", ""}, {progressing, "c", "d", ""}}, true, ExitOK},
		{"the revision waited for, promoting, is not done yet", "c", []state{{promoting, "b", "c", ""}}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &waiter{revision: tc.revision}
			var done bool
			var code int
			var msg string
			for i, s := range tc.states {
				done, code, msg = w.judge(&rolloutpb.Flight{Phase: s.phase, StableRevision: s.stable, CanaryRevision: s.canary, RejectedRevision: s.rejected})
				if done && i < len(tc.states)-1 {
					t.Fatalf("done at state %d of %d: %d %s", i+1, len(tc.states), code, msg)
				}
			}
			if done != tc.wantDone || code != tc.wantCode {
				t.Errorf("done %v, exit %d (%s); want %v, %d", done, code, msg, tc.wantDone, tc.wantCode)
			}
		})
	}
}

func TestProgressText(t *testing.T) {
	const progressing = rolloutpb.Phase_PHASE_PROGRESSING
	for _, tc := range []struct {
		f    *rolloutpb.Flight
		want string
	}{
		{&rolloutpb.Flight{Phase: progressing, Steps: []int32{10, 40, 70}, Step: 1, CanaryWeight: 40}, "step 2/3 [####------] 40%"},
		{&rolloutpb.Flight{Phase: progressing, Steps: []int32{20, 50}, Step: 0, CanaryWeight: 20, Baseline: "fresh"}, "step 1/2 [##--------] 20% + baseline 20%"},
		{&rolloutpb.Flight{Phase: progressing, Steps: []int32{20, 50}, Step: 0, CanaryWeight: 20, CanaryWithdrawn: true}, "step 1/2 [----------] 0%, its share withdrawn until a canary pod is ready"},
		{&rolloutpb.Flight{Phase: rolloutpb.Phase_PHASE_PROMOTING, Steps: []int32{50}, Step: 0, CanaryWeight: 100, Baseline: "fresh"}, "step 1/1 [##########] 100%"},
		{&rolloutpb.Flight{Phase: progressing, Steps: []int32{10, 40}, Step: -1}, "step 0/2 [----------] 0%"},
		{&rolloutpb.Flight{Phase: progressing, Steps: []int32{5}, Step: 0, CanaryWeight: 5}, "step 1/1 [----------] 5%"},
		{&rolloutpb.Flight{Phase: rolloutpb.Phase_PHASE_PROMOTING, Steps: []int32{50}, Step: 0, CanaryWeight: 100}, "step 1/1 [##########] 100%"},
		{&rolloutpb.Flight{Phase: rolloutpb.Phase_PHASE_SUCCEEDED, Steps: []int32{10, 40}, Step: -1}, "step - [----------] 0%"},
		{&rolloutpb.Flight{}, "step - [----------] 0%"},
		{&rolloutpb.Flight{Phase: progressing, Cohorts: []string{"employees", "beta"}, Steps: []int32{0, 0, 20}, Step: 1}, "step 2/3 cohort beta"},
		{&rolloutpb.Flight{Phase: progressing, Cohorts: []string{"beta"}, Steps: []int32{0, 20}, Step: 1, CanaryWeight: 20}, "step 2/2 [##--------] 20%"},
		{&rolloutpb.Flight{Phase: progressing, Strategy: "blueGreen", Cohorts: []string{"preview"}, Steps: []int32{0, 100}, Step: 0}, "step 1/2 blue/green preview"},
		{&rolloutpb.Flight{Phase: progressing, Cohorts: []string{"mirror", "beta"}, Steps: []int32{0, 0, 50}, Step: 0, MirrorPercent: 20}, "step 1/3 mirror 20% (users on stable)"},
		{&rolloutpb.Flight{Phase: progressing, Cohorts: []string{"mirror", "beta"}, Steps: []int32{0, 0, 50}, Step: 1}, "step 2/3 cohort beta"},
		{&rolloutpb.Flight{Phase: progressing, Cohorts: []string{"mirror"}, Steps: []int32{0, 50}, Step: 0, MirrorPercent: 20, MirrorCompared: true}, "step 1/2 mirror 20%, answers compared with stable's (users on stable)"},
		{&rolloutpb.Flight{Phase: progressing, Strategy: "blueGreen", Cohorts: []string{"preview"}, Steps: []int32{0, 100}, Step: 1, CanaryWeight: 100}, "step 2/2 blue/green switched, previous revision kept"},
		{&rolloutpb.Flight{Phase: rolloutpb.Phase_PHASE_PROMOTING, Strategy: "blueGreen", Cohorts: []string{"preview"}, Steps: []int32{0, 100}, Step: 1, CanaryWeight: 100}, "step 2/2 [##########] 100%"},
	} {
		if got := progress(tc.f); got != tc.want {
			t.Errorf("progress(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
	if got := phase(rolloutpb.Phase_PHASE_ROLLED_BACK); got != "RolledBack" {
		t.Errorf("phase ROLLED_BACK = %q, want RolledBack (as the Flight resource writes it)", got)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{exitWith(ExitAborted, errors.New("aborted")), ExitAborted},
		{fmt.Errorf("wrapped: %w", exitWith(ExitRolledBack, errors.New("rolled back"))), ExitRolledBack},
		{context.DeadlineExceeded, ExitTimeout},
		{status.Error(codes.DeadlineExceeded, "late"), ExitTimeout},
		{status.Error(codes.Unavailable, "down"), ExitUnavailable},
		{status.Error(codes.PermissionDenied, "no"), ExitError},
		{errors.New("usage"), ExitError},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
