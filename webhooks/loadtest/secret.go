package loadtest

import (
	"errors"
	"fmt"
	"os"
)

// EnvSecret is the environment variable that may hold the signature secret.
const EnvSecret = "FLEDGE_LOADTESTER_SECRET"

// ReadSecret returns the signature secret from file when it is set, else
// from the EnvSecret variable (read with getenv). It is used byte for byte,
// a trailing newline included, because fledge signs with the Secret key's
// bytes as they are; a file and the variable both set is an error, since
// which one fledge matches would be a guess. No secret at all returns nil
// and no error: the caller decides whether that is acceptable.
func ReadSecret(file string, getenv func(string) string) ([]byte, error) {
	env := getenv(EnvSecret)
	switch {
	case file != "" && env != "":
		return nil, fmt.Errorf("secret: both the file %s and %s are set: choose one", file, EnvSecret)
	case env != "":
		return []byte(env), nil
	case file == "":
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	if len(b) == 0 {
		return nil, errors.New("secret: " + file + " is empty")
	}
	return b, nil
}
