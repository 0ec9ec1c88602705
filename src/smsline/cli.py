"""The `smsline` command line (SPEC §6). Each verb imports its module lazily to keep start-up quick."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="smsline — the SMS service.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
customers_app = typer.Typer(no_args_is_help=True, help="Customers.")
app.add_typer(db_app, name="db")
app.add_typer(customers_app, name="customers")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest version."""
    from smsline.config import load_settings
    from smsline.db.migrate import upgrade_database

    settings = load_settings()
    upgrade_database(settings.database_url)
    typer.echo("database schema is up to date")


@customers_app.command("import")
def customers_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    all_or_nothing: Annotated[
        bool, typer.Option("--all-or-nothing", help="Import nothing if any row is invalid.")
    ] = False,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Only import when there are no customers yet.")
    ] = False,
) -> None:
    """Import customers from a CSV file (customer_id,phone,personal_code,login[,…])."""
    from smsline.config import load_settings
    from smsline.customers import import_command

    code = import_command(load_settings(), file, all_or_nothing=all_or_nothing, if_empty=if_empty)
    raise typer.Exit(code)


@app.command()
def serve() -> None:
    """Run everything: SMPP connectors (or the built-in simulator), processing line, dispatcher."""
    from smsline.config import load_settings
    from smsline.serve import run_service

    run_service(load_settings())


@app.command()
def simulator(
    port: Annotated[int | None, typer.Option(help="SMPP port.")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP control port.")] = None,
    system_id: Annotated[str | None, typer.Option(help="Require this system_id.")] = None,
    password: Annotated[
        str | None, typer.Option(envvar="SMSLINE_SIMULATOR_PASSWORD", help="Require this password.")
    ] = None,
) -> None:
    """Run the SMSC simulator on its own."""
    from smsline.config import load_settings
    from smsline.smpp.simulator import run_standalone

    settings = load_settings()
    asyncio.run(
        run_standalone(
            host=settings.simulator_host,
            port=port if port is not None else settings.simulator_port,
            http_port=http_port if http_port is not None else settings.simulator_http_port,
            system_id=system_id,
            password=password,
            service_number=settings.service_number,
            receipt_delay=settings.simulator_receipt_delay,
        )
    )


@app.command()
def mo(
    phone: Annotated[str, typer.Argument(help="The customer's phone (the sender).")],
    text: Annotated[str, typer.Argument(help="The SMS text.")],
    to: Annotated[str | None, typer.Option(help="Destination; default: the service number.")] = None,
    url: Annotated[
        str | None, typer.Option(help="Simulator HTTP address; default from the configuration.")
    ] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for replies; 0: don't wait.")] = 15.0,
    replies: Annotated[
        int, typer.Option(help="Stop waiting after this many replies (a request gets two).")
    ] = 2,
) -> None:
    """Inject an inbound SMS into the simulator, as if a customer had sent it."""
    import httpx

    from smsline.config import load_settings
    from smsline.smpp.simulator_client import SimulatorError, inject_mo

    settings = load_settings()
    base = url or f"http://{settings.simulator_host}:{settings.simulator_http_port}"
    try:
        result = inject_mo(
            base, phone, text, to or settings.service_number,
            wait=wait, replies_expected=replies, echo=typer.echo,
        )
    except SimulatorError as exc:
        typer.echo(f"the simulator refused the message: {exc}", err=True)
        raise typer.Exit(2) from exc
    except httpx.HTTPError as exc:
        typer.echo(f"could not reach the simulator at {base}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(result)


@app.command()
def send(
    phone: Annotated[str, typer.Argument(help="The recipient's phone, any usual format.")],
    text: Annotated[str, typer.Argument(help="The SMS text.")],
    essential: Annotated[
        bool, typer.Option("--essential", help="Send even if the customer opted out (security alerts).")
    ] = False,
) -> None:
    """Queue an SMS to one phone; the running service sends it."""
    from smsline.config import load_settings
    from smsline.db.engine import create_oneshot_engine
    from smsline.domain.msisdn import InvalidMsisdn
    from smsline.line.direct import send_text

    settings = load_settings()

    async def queue() -> None:
        engine = create_oneshot_engine(settings.database_url)
        try:
            queued = await send_text(engine, settings, phone, text, essential=essential)
        finally:
            await engine.dispose()
        parts = f"{queued.segments} segment(s), {queued.encoding}"
        if queued.status == "queued":
            typer.echo(f"queued message {queued.message_id} to {queued.phone} ({parts})")
        else:
            typer.echo(f"not sent to {queued.phone}: {queued.reason}", err=True)
            raise typer.Exit(1)

    try:
        asyncio.run(queue())
    except (InvalidMsisdn, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def main() -> None:
    app()
