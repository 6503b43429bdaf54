/**
 * SQL fragments the statements share.
 */

/**
 * The keys a JSON parameter lists, as an array for `column = any (...)`, so
 * the rows are found through the column's index. Joined instead on
 * jsonb_to_recordset (which the planner guesses at 100 rows) or matched with
 * `in (select ...)`, the plan read the whole table once it held a few
 * thousand rows: every decision, dedup key or position ever written, for
 * each batch (tests/query_plans_test.ts). `field` picks the key out of a
 * list of objects; without it the list holds the keys themselves.
 */
export function jsonKeys(param: string, type: string, field?: string): string {
  return field === undefined
    ? `array(select jsonb_array_elements_text(${param}::text::jsonb)::${type})`
    : `array(select (e ->> '${field}')::${type} from jsonb_array_elements(${param}::text::jsonb) e)`;
}
