"""Renders a CloudFormation template the way CloudFormation would for a set of parameter values,
as far as a test needs: Conditions evaluated (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition),
Fn::If resolved, resources whose Condition is false left out, AWS::NoValue removed, Ref to a
parameter replaced by its value (a CommaDelimitedList by its list), a parameter's ${Name} put
into Fn::Sub strings. Other intrinsics stay as they are. The template is read with cfn-lint's own YAML decoder (short-form tags included).

Usage: python render_template.py TEMPLATE [Name=Value ...]  -> the rendered template as JSON.
"""
import json
import sys

from cfnlint.decode import decode

NO_VALUE = object()


def main():
    path = sys.argv[1]
    given = dict(a.split("=", 1) for a in sys.argv[2:])
    template, matches = decode(path)
    if template is None:
        print("cannot read %s: %s" % (path, matches), file=sys.stderr)
        sys.exit(2)
    params = {}
    for name, p in template.get("Parameters", {}).items():
        value = given.get(name, p.get("Default", ""))
        if p.get("Type") == "CommaDelimitedList":
            value = [v for v in str(value).split(",")] if str(value) != "" else [""]
        params[name] = value
    unknown = set(given) - set(params)
    if unknown:
        print("unknown parameters: %s" % sorted(unknown), file=sys.stderr)
        sys.exit(2)
    conditions = template.get("Conditions", {})
    cache = {}

    def value(v):
        if isinstance(v, dict) and len(v) == 1:
            (k, a), = v.items()
            if k == "Ref" and a in params:
                return params[a]
            if k == "Fn::Join":
                return a[0].join(str(x) for x in flat(value(a[1])))
        return v

    def flat(v):
        return v if isinstance(v, list) else [v]

    def cond(name):
        if name not in cache:
            cache[name] = truth(conditions[name])
        return cache[name]

    def truth(c):
        (k, a), = c.items()
        if k == "Fn::Equals":
            return value(a[0]) == value(a[1])
        if k == "Fn::Not":
            return not truth(a[0])
        if k == "Fn::And":
            return all(truth(x) for x in a)
        if k == "Fn::Or":
            return any(truth(x) for x in a)
        if k == "Condition":
            return cond(a)
        raise ValueError("condition %r" % c)

    def render(v):
        if isinstance(v, dict):
            if len(v) == 1:
                (k, a), = v.items()
                if k == "Fn::If":
                    return render(a[1] if cond(a[0]) else a[2])
                if k == "Ref" and a == "AWS::NoValue":
                    return NO_VALUE
                if k == "Ref" and a in params:
                    return params[a]
                if k == "Fn::Sub" and isinstance(a, str):
                    # Parameters put in; pseudo parameters and resources' names stay.
                    for name, val in params.items():
                        if isinstance(val, str):
                            a = a.replace("${%s}" % name, val)
                    return {k: a}
            out = {}
            for k, x in v.items():
                r = render(x)
                if r is not NO_VALUE:
                    out[str(k)] = r
            return out
        if isinstance(v, list):
            return [r for r in (render(x) for x in v) if r is not NO_VALUE]
        return v

    resources = {}
    for name, r in template.get("Resources", {}).items():
        if "Condition" in r and not cond(r["Condition"]):
            continue
        resources[str(name)] = render(r)
    out = {"Parameters": params, "Conditions": {str(c): cond(c) for c in conditions}, "Resources": resources}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
