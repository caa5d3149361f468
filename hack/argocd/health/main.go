// argocd-health evaluates a resource's health the way Argo CD does, with Argo CD's own code:
// the health script is installed as the override that
// `resource.customizations.health.<group>_<Kind>` in argocd-cm would install, and the
// object's health is asked of gitops-engine, as `argocd admin settings resource-overrides
// health` asks it. It prints the same two lines as that command.
//
//	argocd-health [-openlibs] <script.lua> <object.json|yaml>
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/gitops-engine/pkg/health"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func main() {
	openLibs := flag.Bool("openlibs", false, "give the script Lua's standard libraries (useOpenLibs; Argo CD's default is off)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health [-openlibs] <script.lua> <object.json|yaml>")
		os.Exit(2)
	}
	script, err := os.ReadFile(flag.Arg(0))
	exitOn(err)
	text, err := os.ReadFile(flag.Arg(1))
	exitOn(err)
	var obj unstructured.Unstructured
	exitOn(yaml.Unmarshal(text, &obj))

	overrides := map[string]v1alpha1.ResourceOverride{
		lua.GetConfigMapKey(obj.GroupVersionKind()): {HealthLua: string(script), UseOpenLibs: *openLibs},
	}
	said, err := health.GetResourceHealth(&obj, lua.ResourceHealthOverrides(overrides))
	exitOn(err)
	if said == nil {
		gvk := obj.GroupVersionKind()
		fmt.Fprintf(os.Stderr, "no health script applies to %s/%s\n", gvk.Group, gvk.Kind)
		os.Exit(1)
	}
	fmt.Printf("STATUS: %s\nMESSAGE: %s\n", said.Status, said.Message)
}

func exitOn(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
