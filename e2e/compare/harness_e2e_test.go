//go:build e2e

package compare_test

import (
	"os"
	"testing"

	"github.com/fledgehq/fledge/e2e/enginetest"
	"github.com/fledgehq/fledge/e2e/sandbox"
)

var suite = sandbox.Suite{Options: sandbox.Options{MeshSeed: 7}}

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

// The engine and the app "shop" as e2e/enginetest runs them, under the
// names these tests use.
const (
	engineNamespace = enginetest.EngineNamespace
	defaultLatency  = enginetest.DefaultLatency
)

var (
	engineBinary             = enginetest.EngineBinary
	startEngine              = enginetest.StartEngine
	shopApp                  = enginetest.ShopApp
	appOf                    = enginetest.AppOf
	setImage                 = enginetest.SetImage
	shopTarget               = enginetest.ShopTarget
	assertSettled            = enginetest.AssertSettled
	getFlight                = enginetest.GetFlight
	waitFlight               = enginetest.WaitFlight
	decisionsOf              = enginetest.DecisionsOf
	evidenceOf               = enginetest.EvidenceOf
	dumpOnFailure            = enginetest.DumpOnFailure
	serviceAccountKubeconfig = enginetest.ServiceAccountKubeconfig
	freeAddr                 = enginetest.FreeAddr
	repoFile                 = enginetest.RepoFile
)
