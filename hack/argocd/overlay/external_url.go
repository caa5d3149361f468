package settings

// ValidateExternalURL is what controller/cache of Argo CD v3.2.12 calls; that release's
// util/settings names it validateExternalURL and does not export it, so the module as
// published does not build. hack/build-tools.sh adds this file to the package with
// `go build -overlay`.
func ValidateExternalURL(u string) error { return validateExternalURL(u) }
