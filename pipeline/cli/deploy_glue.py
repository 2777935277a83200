"""``soclake deploy-glue``: the stack template's Glue tables, generated from the lake schemas."""

from __future__ import annotations

import click

from pipeline.analyst.glue_cfn import update
from pipeline.cli.options import to_args
from pipeline.errors import ConfigError


@click.command("deploy-glue", short_help="write the CloudFormation Glue tables of the stack template from the lake "
               "schemas",
               help="Regenerates the AWS::Glue::Table resources between the '# BEGIN Glue tables' and "
               "'# END Glue tables' lines of the TEMPLATE (default deploy/aws/soclake.yml) from the same schemas as "
               "soclake athena-ddl (columns, types, partition projection). --check changes nothing and exits 1 when "
               "the template is stale.")
@click.argument("template", required=False, default="deploy/aws/soclake.yml", metavar="[TEMPLATE]")
@click.option("--check", is_flag=True, help="exit 1 if the block differs from the schemas; write nothing")
@to_args
def deploy_glue_command(args):
    return cmd_deploy_glue(args)


COMMANDS = [deploy_glue_command]


def cmd_deploy_glue(args) -> int:
    current = update(args.template, check=args.check)
    if current:
        print(f"{args.template}: Glue tables are current")
        return 0
    if args.check:
        raise ConfigError(f"{args.template}: the Glue tables differ from the lake schemas: "
                          f"run `soclake deploy-glue {args.template}`")
    print(f"{args.template}: Glue tables rewritten")
    return 0
