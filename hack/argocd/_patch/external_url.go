package settings

// ValidateExternalURL is what controller/cache of Argo CD v3.2.12 calls; that release's
// util/settings names it validateExternalURL and does not export it, so the module as
// published does not build. hack/build-tools.sh copies the module and adds this file to
// its util/settings (this directory's name keeps it out of our own module's packages).
func ValidateExternalURL(u string) error { return validateExternalURL(u) }
