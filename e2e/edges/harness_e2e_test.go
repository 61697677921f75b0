//go:build e2e

package edges_test

import (
	"os"
	"testing"

	"github.com/fledgehq/fledge/e2e/enginetest"
	"github.com/fledgehq/fledge/e2e/sandbox"
)

var suite = sandbox.Suite{Options: sandbox.Options{MeshSeed: 17}}

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

// The engine and the app "shop" as e2e/enginetest runs them.
var (
	startEngine   = enginetest.StartEngine
	shopApp       = enginetest.ShopApp
	setImage      = enginetest.SetImage
	assertSettled = enginetest.AssertSettled
	waitFlight    = enginetest.WaitFlight
)
