-- 20261130020000_book_writer.sql
-- The open book's version: the transaction that last changed `positions`.
-- The worker keeps the book it last wrote in memory and writes its next
-- batch only if this is still that transaction (checked under a row lock in
-- the batch's own statement); otherwise it reads the book again and decides
-- again. So the book is read once, not on every batch, and decisions on any
-- instance still see every change committed before theirs. The trigger
-- covers every writer of `positions`, an operator's hand edit included.
create table book_version (
  id integer primary key check (id = 1),
  writer bigint not null
);
insert into book_version (id, writer) values (1, 0);
comment on table book_version is 'One row: the transaction that last changed positions (set by a trigger). The worker writes a batch only if it is still the one its kept book came from.';

create function note_book_writer() returns trigger language plpgsql as $$
begin
  update book_version set writer = txid_current()
    where id = 1 and writer <> txid_current();
  return null;
end $$;

create trigger positions_book_writer after insert or update or delete on positions
  for each row execute function note_book_writer();
create trigger positions_book_writer_truncate after truncate on positions
  for each statement execute function note_book_writer();

-- Undoes the statement that calls it, with `message`: for a condition the
-- batch write cannot meet although the book said it could.
create function fail_statement(message text) returns boolean language plpgsql as $$
begin
  raise exception '%', message;
end $$;

insert into schema_migrations (version, name) values ('20261130020000', 'book_writer')
  on conflict (version) do nothing;
