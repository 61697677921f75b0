package api

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Limits of the fields of mutating requests (rollouts.proto).
const (
	maxRequestID = 128
	maxReason    = 256
	// maxImage bounds an image reference before it is matched: a name is
	// at most 255 characters, a tag 128, a digest ~140.
	maxImage = 600
)

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// imageReference matches a container image reference as the OCI
// distribution grammar defines it (github.com/distribution/reference,
// which is not a dependency of fledge, hence this transcription):
//
//	reference        := name [ ":" tag ] [ "@" digest ]
//	name             := [ domain "/" ] path-component { "/" path-component }
//	domain           := host [ ":" port ]
//	host             := domain-component { "." domain-component } | "[" ipv6 "]"
//	domain-component := /[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]/
//	path-component   := /[a-z0-9]+/ { separator /[a-z0-9]+/ }
//	separator        := /[._]|__|-+/
//	tag              := /[\w][\w.-]{0,127}/
//	digest           := algorithm ":" /[0-9a-fA-F]{32,}/
//	algorithm        := /[A-Za-z][A-Za-z0-9]*/ { /[-_+.]/ /[A-Za-z][A-Za-z0-9]*/ }
//
// The name is further limited to 255 characters (imageName). A reference
// without a tag or digest is valid (Kubernetes pulls :latest); so is one
// with both.
var imageReference = func() *regexp.Regexp {
	const (
		alnum     = `[a-z0-9]+`
		separator = `(?:[._]|__|-+)`
		component = alnum + `(?:` + separator + alnum + `)*`
		domainC   = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
		host      = `(?:` + domainC + `(?:\.` + domainC + `)*|\[[a-fA-F0-9:]+\])`
		domain    = host + `(?::[0-9]+)?`
		name      = `((?:` + domain + `/)?` + component + `(?:/` + component + `)*)`
		tag       = `[\w][\w.-]{0,127}`
		algorithm = `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*`
		digest    = algorithm + `:[0-9a-fA-F]{32,}`
	)
	return regexp.MustCompile(`^` + name + `(?::` + tag + `)?(?:@` + digest + `)?$`)
}()

// validImage reports what is wrong with an image reference, or "".
func validImage(ref string) string {
	switch {
	case ref == "":
		return "is required"
	case len(ref) > maxImage:
		return fmt.Sprintf("is %d characters long: not an image reference", len(ref))
	}
	m := imageReference.FindStringSubmatch(ref)
	if m == nil {
		return fmt.Sprintf("%q is not a valid image reference (want [registry/]repository[:tag][@digest], repository in lower case)", ref)
	}
	if len(m[1]) > 255 {
		return fmt.Sprintf("%q: the repository name is longer than 255 characters", ref)
	}
	return ""
}

// invalid is an InvalidArgument error naming the field.
func invalid(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s %s", field, fmt.Sprintf(format, args...))
}

// validateTarget checks a request's namespace and name (the Authorizer
// has, too, when it is installed; the service does not rely on it).
func validateTarget(namespace, name string) error {
	if err := (Access{Verb: VerbGet, Namespace: namespace, Name: name}).validate(); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// validateNamespace checks the namespace of a List or Watch.
func validateNamespace(namespace string) error {
	if err := (Access{Verb: VerbList, Namespace: namespace}).validate(); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

func validateRequestID(id string) error {
	switch {
	case id == "":
		return invalid("request_id", "is required: choose one per call (a UUID, say) and reuse it when retrying the call")
	case len(id) > maxRequestID:
		return invalid("request_id", "is %d characters long; at most %d", len(id), maxRequestID)
	case !requestIDPattern.MatchString(id):
		return invalid("request_id", "%q: use letters, digits, '.', '_', ':' and '-' only", id)
	}
	return nil
}

func validateReason(reason string) error {
	if n := utf8.RuneCountInString(reason); n > maxReason {
		return invalid("reason", "is %d characters long; at most %d", n, maxReason)
	}
	if i := strings.IndexFunc(reason, unicode.IsControl); i >= 0 {
		return invalid("reason", "has a control character at byte %d: one line of text, please", i)
	}
	return nil
}

func validateContainer(name string) error {
	if name == "" {
		return invalid("container", "is required")
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return invalid("container", "%q: %s", name, strings.Join(errs, "; "))
	}
	return nil
}
