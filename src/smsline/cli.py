"""The `smsline` command line (SPEC §6). Each verb imports its module lazily to keep start-up quick."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from smsline.campaigns.service import Run
    from smsline.notify.templates import Template

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, add_completion=False, help="smsline — the SMS service.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
customers_app = typer.Typer(no_args_is_help=True, help="Customers.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens of the systems that call smsline.")
templates_app = typer.Typer(no_args_is_help=True, help="Notification templates.")
campaign_app = typer.Typer(no_args_is_help=True, help="Mass texting: campaigns.")
app.add_typer(db_app, name="db")
app.add_typer(customers_app, name="customers")
app.add_typer(tokens_app, name="tokens")
app.add_typer(templates_app, name="templates")
app.add_typer(campaign_app, name="campaign")


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
    from smsline import eventloop
    from smsline.config import load_settings
    from smsline.smpp.simulator import run_standalone

    settings = load_settings()
    eventloop.run(
        run_standalone(
            host=settings.simulator_host,
            port=port if port is not None else settings.simulator_port,
            http_port=http_port if http_port is not None else settings.simulator_http_port,
            system_id=system_id,
            password=password,
            service_number=settings.service_number,
            receipt_delay=settings.simulator_receipt_delay,
            keep=settings.simulator_keep,
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


def _in_transaction(work: Callable[[Connection], T]) -> T:
    """Run ``work`` in one transaction on the configured database."""
    from smsline.config import load_settings
    from smsline.db.engine import create_oneshot_engine, transaction

    settings = load_settings()

    async def run() -> T:
        await _migrated_or_exit(settings.database_url)
        engine = create_oneshot_engine(settings.database_url)
        try:
            async with transaction(engine) as conn:
                return await conn.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def _migrated_or_exit(url: str) -> None:
    """A command that works on the database says what to do when it is not migrated yet."""
    from smsline.db.migrate import DatabaseNotMigrated, check_migrated

    try:
        await check_migrated(url)
    except DatabaseNotMigrated as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="Who uses the token, e.g. card-issuing.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="A scope (repeatable); default notifications:send and messages:read."),
    ] = None,
    rate_limit: Annotated[
        int | None, typer.Option("--rate-limit", help="Requests per second (default: the configured one).")
    ] = None,
) -> None:
    """Make an API token. The token and its callback signing secret are printed once, never again."""
    from smsline.config import load_settings
    from smsline.domain.tokens import SCOPES
    from smsline.notify.service_key import MissingServiceKey, service_key
    from smsline.notify.tokens import TokenError, create_token

    try:
        key = service_key(load_settings())
        issued = _in_transaction(
            lambda conn: create_token(conn, name, scope or [], service_key=key, rate_limit=rate_limit)
        )
    except (TokenError, MissingServiceKey) as exc:
        typer.echo(f"error: {exc}", err=True)
        if isinstance(exc, TokenError) and "scope" in str(exc):
            typer.echo("scopes: " + ", ".join(SCOPES), err=True)
        raise typer.Exit(2) from exc
    scopes = " ".join(sorted(issued.info.scopes))
    typer.echo(f"API token {issued.info.name!r} with scopes {scopes}")
    typer.echo("Keep these now: they are shown only this once.")
    typer.echo(f"  token:           {issued.token}")
    typer.echo(f"  signing secret:  {issued.signing_secret}   (verifies status callbacks)")


@tokens_app.command("list")
def tokens_list() -> None:
    """List the API tokens (never the tokens themselves)."""
    from rich.console import Console
    from rich.table import Table

    from smsline.domain.tokens import display_prefix
    from smsline.notify.tokens import list_tokens

    found = _in_transaction(list_tokens)
    table = Table(title="API tokens", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("token", no_wrap=True)
    for heading in ("scopes", "rate limit", "created", "revoked"):
        table.add_column(heading)
    for t in found:
        table.add_row(
            t.name,
            display_prefix(t.public_id),
            " ".join(sorted(t.scopes)),
            f"{t.rate_limit}/s" if t.rate_limit else "default",
            t.created_at.strftime("%Y-%m-%d %H:%M"),
            t.revoked_at.strftime("%Y-%m-%d %H:%M") if t.revoked_at else "",
        )
    Console().print(table)


@tokens_app.command("revoke")
def tokens_revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke an API token: it stops working within seconds."""
    from smsline.notify.tokens import revoke_token

    if not _in_transaction(lambda conn: revoke_token(conn, name)):
        typer.echo(f"error: no active token named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked the API token {name!r}")


@templates_app.command("set")
def templates_set(
    name: Annotated[str, typer.Argument(help="The template's name, e.g. card_ready.")],
    en: Annotated[str, typer.Option("--en", help="English text; placeholders as {name}.")],
    ru: Annotated[str, typer.Option("--ru", help="Russian text; the same placeholders.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="A parameter the texts use (repeatable).")
    ] = None,
    sample: Annotated[
        list[str] | None, typer.Option("--sample", help="NAME=VALUE for the sample rendering (repeatable).")
    ] = None,
    essential: Annotated[
        bool, typer.Option("--essential", help="Send even to customers who opted out (security alerts only).")
    ] = False,
) -> None:
    """Create or replace a template; it is checked first, and its sample rendering is shown."""
    import getpass

    from smsline.notify.templates import InvalidTemplate, save_template

    samples: dict[str, str] = {}
    for pair in sample or []:
        key, sep, value = pair.partition("=")
        if not sep:
            typer.echo(f"error: --sample {pair!r} is not NAME=VALUE", err=True)
            raise typer.Exit(2)
        samples[key] = value
    actor = f"cli:{getpass.getuser()}"
    try:
        template, created = _in_transaction(
            lambda conn: save_template(
                conn,
                name,
                {"en": en, "ru": ru},
                param or [],
                sample=samples or None,
                essential=essential,
                actor=actor,
            )
        )
    except InvalidTemplate as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem.field}: {problem.message}", err=True)
        raise typer.Exit(2) from exc
    what = "created" if created else "updated"
    typer.echo(f"{what} template {name!r}" + (" (essential)" if essential else ""))
    _print_renderings(template)


def _print_renderings(template: Template) -> None:
    for language, rendering in template.renderings().items():
        typer.echo(f"  {language}: {rendering.segments} segment(s), {rendering.encoding}: {rendering.text}")


@templates_app.command("list")
def templates_list() -> None:
    """List the templates."""
    from rich.console import Console
    from rich.table import Table

    from smsline.notify.templates import list_templates

    found = _in_transaction(list_templates)
    table = Table(title="Templates", title_justify="left")
    table.add_column("name", no_wrap=True)
    for heading in ("parameters", "essential", "segments en/ru", "updated", "by"):
        table.add_column(heading)
    for t in found:
        renderings = t.renderings()
        table.add_row(
            t.name,
            " ".join(t.parameters),
            "yes" if t.essential else "",
            f"{renderings['en'].segments}/{renderings['ru'].segments}",
            t.updated_at.strftime("%Y-%m-%d %H:%M"),
            t.updated_by,
        )
    Console().print(table)


@templates_app.command("show")
def templates_show(name: Annotated[str, typer.Argument(help="The template's name.")]) -> None:
    """Show a template and its sample rendering."""
    from smsline.notify.templates import get_template

    template = _in_transaction(lambda conn: get_template(conn, name))
    if template is None:
        typer.echo(f"error: no template named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{template.name}" + (" (essential)" if template.essential else ""))
    typer.echo(f"  parameters: {' '.join(template.parameters) or '-'}")
    typer.echo(f"  en: {template.texts['en']}")
    typer.echo(f"  ru: {template.texts['ru']}")
    typer.echo("sample rendering:")
    _print_renderings(template)


@templates_app.command("delete")
def templates_delete(name: Annotated[str, typer.Argument(help="The template's name.")]) -> None:
    """Delete a template (notifications already queued are not affected)."""
    from smsline.notify.templates import delete_template

    if not _in_transaction(lambda conn: delete_template(conn, name)):
        typer.echo(f"error: no template named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"deleted template {name!r}")


# --- campaigns ---------------------------------------------------------------------------


def _with_database(make: Callable[[Run[Any]], Awaitable[T]]) -> T:
    """Run ``make(run)`` where ``run`` does one transaction on the configured database."""
    from smsline.config import load_settings
    from smsline.db.engine import create_oneshot_engine, transaction

    settings = load_settings()

    async def main() -> T:
        await _migrated_or_exit(settings.database_url)
        engine = create_oneshot_engine(settings.database_url)

        async def run(work: Callable[[Connection], Any]) -> Any:
            async with transaction(engine) as conn:
                return await conn.run_sync(work)

        try:
            return await make(run)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


@campaign_app.command("create")
def campaign_create(
    name: Annotated[str, typer.Argument(help="The campaign's name.")],
    text: Annotated[str, typer.Option("--text", help="The text; fields {name}, {customer_id}, {phone}.")],
    text_ru: Annotated[
        str | None, typer.Option("--text-ru", help="The text for customers whose language is ru.")
    ] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Every customer with SMS on.")] = False,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Customers with this tag (repeatable).")
    ] = None,
    language: Annotated[list[str] | None, typer.Option("--language", help="en or ru (repeatable).")] = None,
    timezone: Annotated[
        list[str] | None, typer.Option("--timezone", help="An IANA zone (repeatable).")
    ] = None,
    ids: Annotated[
        Path | None,
        typer.Option("--ids", exists=True, dir_okay=False, help="File of customer ids, one a line."),
    ] = None,
    phones: Annotated[
        Path | None,
        typer.Option("--phones", exists=True, dir_okay=False, help="File of phones, one a line."),
    ] = None,
    start_at: Annotated[
        str | None, typer.Option("--start-at", help="Not before this time (ISO 8601 with zone).")
    ] = None,
    tps: Annotated[int | None, typer.Option("--tps", help="SMS per second at most.")] = None,
    quiet: Annotated[
        str, typer.Option("--quiet-hours", help="Window in each recipient's zone, HH:MM-HH:MM.")
    ] = "09:00-22:00",
) -> None:
    """Create a campaign (a draft); its audience is expanded and its cost shown. Start it with
    `smsline campaign start ID`."""
    import datetime as dt
    import getpass

    from smsline.campaigns.service import Audience, InvalidCampaign, NewCampaign, create_campaign
    from smsline.config import load_settings
    from smsline.domain.quiet_hours import Window, parse_hhmm

    def fail(message: str) -> typer.Exit:
        typer.echo(f"error: {message}", err=True)
        return typer.Exit(2)

    if ids or phones:
        audience = Audience(
            "list", customer_ids=_lines(ids) if ids else (), phones=_lines(phones) if phones else ()
        )
    elif tag or language or timezone:
        audience = Audience(
            "filter", tags=tuple(tag or ()), languages=tuple(language or ()), timezones=tuple(timezone or ())
        )
    elif everyone:
        audience = Audience("all")
    else:
        raise fail("choose the audience: --all, --tag/--language/--timezone, or --ids/--phones FILE")
    try:
        opens, _, closes = quiet.partition("-")
        window = Window(parse_hhmm(opens), parse_hhmm(closes))
    except ValueError as exc:
        raise fail(f"--quiet-hours: {exc}") from exc
    start: dt.datetime | None = None
    if start_at:
        try:
            start = dt.datetime.fromisoformat(start_at)
        except ValueError as exc:
            raise fail(f"--start-at: {start_at!r} is not an ISO 8601 time") from exc
    new = NewCampaign(
        name=name, text=text, text_ru=text_ru, audience=audience, start_at=start, tps=tps, window=window
    )
    region = load_settings().default_region
    try:
        created = _with_database(
            lambda run: create_campaign(run, new, actor=f"cli:{getpass.getuser()}", region=region)
        )
    except InvalidCampaign as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem.field}: {problem.message}", err=True)
        raise typer.Exit(2) from exc
    campaign = created.campaign
    typer.echo(f"created campaign {campaign.id} {campaign.name!r} (draft): {campaign.total} recipients")
    for language_, rendering in campaign.renderings().items():
        typer.echo(f"  {language_}: {rendering.segments} segment(s), {rendering.encoding}: {rendering.text}")
    typer.echo(f"  estimated cost: {campaign.estimated_segments()} segments")
    if created.unknown_count:
        typer.echo(f"  {created.unknown_count} listed entries name no customer:", err=True)
        for unknown in created.unknown[:20]:
            typer.echo(f"    {unknown.value}: {unknown.reason}", err=True)


@campaign_app.command("list")
def campaign_list(
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only in this state (repeatable).")
    ] = None,
) -> None:
    """List campaigns, newest first."""
    from rich.console import Console
    from rich.table import Table

    from smsline.campaigns.service import list_campaigns

    found = _in_transaction(lambda conn: list_campaigns(conn, states=state or ()))
    table = Table(title="Campaigns", title_justify="left")
    for heading in ("id", "name", "state", "recipients", "tps", "quiet hours", "created", "by"):
        table.add_column(heading)
    for c in found:
        table.add_row(
            str(c.id), c.name, c.state, "" if c.total is None else str(c.total),
            str(c.tps) if c.tps else "-", str(c.window), c.created_at.strftime("%Y-%m-%d %H:%M"),
            c.created_by,
        )
    Console().print(table)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@campaign_app.command("show")
def campaign_show(
    campaign_id: Annotated[int, typer.Argument(help="The campaign's id.")],
    follow: Annotated[bool, typer.Option("--follow", help="Draw live progress until it ends.")] = False,
) -> None:
    """Show a campaign, its progress and its history."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from smsline.campaigns.service import Campaign, campaign_history, get_campaign
    from smsline.campaigns.service import progress as progress_of

    def load(conn: Connection) -> tuple[Campaign, Any, Any] | None:
        campaign = get_campaign(conn, campaign_id)
        if campaign is None:
            return None
        return campaign, progress_of(conn, campaign), campaign_history(conn, campaign_id)

    found = _in_transaction(load)
    if found is None:
        typer.echo(f"error: no campaign {campaign_id}", err=True)
        raise typer.Exit(1)
    campaign, p, events = found
    console = Console()
    console.print(f"[bold]campaign {campaign.id}[/bold] {campaign.name!r}: {campaign.state}")
    console.print(f"  audience: {campaign.audience}; recipients: {campaign.total}")
    console.print(
        f"  quiet hours {campaign.window} in each recipient's zone; tps: {campaign.tps or 'no cap'}"
    )
    if campaign.start_at:
        console.print(f"  start at: {campaign.start_at.isoformat()}")
    for language, rendering in campaign.renderings().items():
        console.print(
            f"  {language}: {rendering.segments} segment(s), {rendering.encoding}: {rendering.text}"
        )
    console.print(f"  estimated cost: {campaign.estimated_segments()} segments")
    console.print(
        f"  progress: sent {p.sent}, delivered {p.delivered}, failed {p.failed}, suppressed {p.suppressed}, "
        f"cancelled {p.cancelled}, remaining {p.remaining} of {p.total}; "
        f"rate {p.rate:.1f}/s, ETA {_eta(p.eta_seconds)}"
    )
    for event in events:
        console.print(
            f"  {event.at.strftime('%Y-%m-%d %H:%M:%S')} {event.actor}: {event.action}"
            + (f" ({event.detail})" if event.detail else "")
        )
    if not follow or campaign.state in ("completed", "cancelled"):
        return
    columns = (
        TextColumn("[bold]{task.fields[state]}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "sent {task.fields[sent]} delivered {task.fields[delivered]} failed {task.fields[failed]} "
            "suppressed {task.fields[suppressed]} · {task.fields[rate]}/s · ETA {task.fields[eta]}"
        ),
    )

    def fields(p: Any) -> dict[str, Any]:
        return {
            "state": p.state, "sent": p.sent, "delivered": p.delivered, "failed": p.failed,
            "suppressed": p.suppressed, "rate": f"{p.rate:.1f}", "eta": _eta(p.eta_seconds),
        }

    with Progress(*columns, console=console) as bar:
        task = bar.add_task(campaign.name, total=p.total or 1, completed=p.done, **fields(p))
        while True:
            time.sleep(0.5)
            found = _in_transaction(load)
            if found is None:
                return
            campaign, p, _ = found
            bar.update(task, total=p.total or 1, completed=p.done, **fields(p))
            if campaign.state in ("completed", "cancelled"):
                break
    console.print(f"campaign {campaign.id} {campaign.state}")


def _campaign_action(action: str, campaign_id: int) -> None:
    import getpass

    from smsline.campaigns.service import CampaignNotFound, StateConflict, act

    try:
        campaign = _with_database(
            lambda run: act(run, campaign_id, action, actor=f"cli:{getpass.getuser()}")
        )
    except CampaignNotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except StateConflict as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"campaign {campaign.id} is {campaign.state}")


@campaign_app.command("start")
def campaign_start(campaign_id: Annotated[int, typer.Argument(help="The campaign's id.")]) -> None:
    """Start a draft (it waits for its start time, if it has one)."""
    _campaign_action("start", campaign_id)


@campaign_app.command("pause")
def campaign_pause(campaign_id: Annotated[int, typer.Argument(help="The campaign's id.")]) -> None:
    """Pause a running campaign: no new SMS of it go out within a second."""
    _campaign_action("pause", campaign_id)


@campaign_app.command("resume")
def campaign_resume(campaign_id: Annotated[int, typer.Argument(help="The campaign's id.")]) -> None:
    """Resume a paused campaign where it stopped."""
    _campaign_action("resume", campaign_id)


@campaign_app.command("cancel")
def campaign_cancel(campaign_id: Annotated[int, typer.Argument(help="The campaign's id.")]) -> None:
    """Cancel a campaign: the recipients not yet sent are cancelled."""
    _campaign_action("cancel", campaign_id)


def main() -> None:
    app()
