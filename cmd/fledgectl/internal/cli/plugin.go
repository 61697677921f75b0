package cli

import (
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// kubectl runs any executable named kubectl-NAME on PATH for `kubectl
// NAME` (kubectl-a-b for `kubectl a b`, kubectl-a_b for `kubectl a-b`).
// fledgectl installed, copied or linked, as kubectl-fledge is therefore
// `kubectl fledge`, and says so in its help, as kubectl's own commands
// would.

// programName is the name fledgectl calls itself when run as argv0.
const programName = "fledgectl"

// naming is how fledgectl, run under some name, calls itself: use is the
// executable's name (cobra's completion scripts complete it), display
// what the user types ("kubectl fledge").
type naming struct {
	use, display string
}

// namingOf reads argv[0]. A name other than kubectl-* is fledgectl,
// whatever the file is called.
func namingOf(argv0 string) naming {
	base := strings.TrimSuffix(filepath.Base(argv0), ".exe")
	plugin, ok := strings.CutPrefix(base, "kubectl-")
	if !ok || plugin == "" {
		return naming{use: programName, display: programName}
	}
	words := strings.Split(plugin, "-")
	for i, w := range words {
		words[i] = strings.ReplaceAll(w, "_", "-")
	}
	return naming{use: base, display: "kubectl " + strings.Join(words, " ")}
}

func (n naming) plugin() bool { return n.display != programName }

// apply names root, and, as a kubectl plugin, rewrites the command lines
// that help texts show ("fledgectl wait shop") to what the user types.
func (n naming) apply(root *cobra.Command) {
	root.Use = n.use
	if !n.plugin() {
		return
	}
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations[cobra.CommandDisplayNameAnnotation] = n.display
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Long = strings.ReplaceAll(c.Long, programName+" ", n.display+" ")
		c.Example = strings.ReplaceAll(c.Example, programName+" ", n.display+" ")
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
