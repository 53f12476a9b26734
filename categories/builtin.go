package categories

import "github.com/cmbs/cmbs/occi/model"

// parseBuiltin parses the descriptions of one built-in category set
// (actions, then kinds, then mixins, in that order) as built-in categories,
// binding its kinds to provider. set names it in the panic a malformed
// description raises: that is a programming error, caught by tests.
// prepare, when not nil, rewrites a description before it is parsed.
func parseBuiltin(set, provider string, actions, kinds, mixins []map[string]any, prepare func(map[string]any)) []*model.Category {
	var out []*model.Category
	add := func(class model.Class, desc map[string]any) {
		if prepare != nil {
			prepare(desc)
		}
		c, err := model.ParseCategory(class, desc)
		if err != nil {
			panic("categories: " + set + " " + string(class) + ": " + err.Error())
		}
		c.Builtin = true
		if class == model.ClassKind {
			c.Provider = model.Provider{Local: []string{provider}}
		}
		out = append(out, c)
	}
	for _, a := range actions {
		add(model.ClassAction, a)
	}
	for _, k := range kinds {
		add(model.ClassKind, k)
	}
	for _, m := range mixins {
		add(model.ClassMixin, m)
	}
	return out
}
